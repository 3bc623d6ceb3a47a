"""The fingerprint lock: a published contract version is immutable.

``avro/fingerprints.lock`` holds one line per published version: ``<full name> <version>
<fingerprint hex>``. A change to a published .avsc that changes its wire schema is refused;
the change goes into a new version file instead. ``python -m schemas.lock`` prints the lines
of the versions not yet locked, ready to append.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from schemas.catalog import AVRO_DIR, Contract, SchemaCatalog
from schemas.errors import ContractLoadError

__all__ = ["LOCK_FILE", "check_lock", "lock_line", "read_lock"]

LOCK_FILE: Final = AVRO_DIR / "fingerprints.lock"
LockEntries = Mapping[tuple[str, int], str]


def lock_line(contract: Contract) -> str:
    """The lock line of ``contract``."""
    return f"{contract.name} {contract.version} {contract.fingerprint_hex}"


def read_lock(path: Path = LOCK_FILE) -> dict[tuple[str, int], str]:
    """(full name, version) -> fingerprint hex, from a lock file; '#' starts a comment."""
    entries: dict[tuple[str, int], str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        parts = content.split()
        if len(parts) != 3 or not parts[1].isdigit() or len(parts[2]) != 16:
            raise ContractLoadError(f"{path.name} line {number}: expected '<name> <version> <hex>'")
        entries[(parts[0], int(parts[1]))] = parts[2].lower()
    return entries


def check_lock(catalog: SchemaCatalog, locked: LockEntries) -> list[str]:
    """Why the catalog breaks the lock: a changed or vanished published version, or no entry."""
    problems: list[str] = []
    present = set()
    for contract in catalog.contracts():
        key = (contract.name, contract.version)
        present.add(key)
        expected = locked.get(key)
        next_file = f"{contract.short_name}.v{catalog.versions(contract.name)[-1] + 1}.avsc"
        if expected is None:
            problems.append(
                f"{contract.label} is not in fingerprints.lock: once the version is final, "
                f"append the line '{lock_line(contract)}' (python -m schemas.lock prints it)"
            )
        elif expected != contract.fingerprint_hex:
            problems.append(
                f"{contract.label} changed its fingerprint (locked {expected}, now "
                f"{contract.fingerprint_hex}): published versions are immutable; revert "
                f"{contract.path.name} and put the change in a new version, {next_file}, "
                "then append its line to fingerprints.lock"
            )
    for name, version in sorted(set(locked) - present):
        problems.append(
            f"{name} v{version} is in fingerprints.lock but its .avsc is gone: "
            "published versions must stay in the catalog"
        )
    return problems


def main() -> int:
    """Print the lock lines of the catalog versions not in the lock yet."""
    catalog = SchemaCatalog.load()
    locked = read_lock() if LOCK_FILE.exists() else {}
    for contract in catalog.contracts():
        if (contract.name, contract.version) not in locked:
            sys.stdout.write(lock_line(contract) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
