"""Published contract versions are immutable: their fingerprints are locked in the repository."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from schemas import ContractLoadError, SchemaCatalog
from schemas.lock import LOCK_FILE, check_lock, lock_line, read_lock


def test_every_contract_version_matches_fingerprints_lock(catalog: SchemaCatalog) -> None:
    problems = check_lock(catalog, read_lock(LOCK_FILE))
    assert not problems, "\n".join(problems)


def test_a_changed_published_version_is_refused(avro_copy: Callable[[], Path]) -> None:
    root = avro_copy()
    path = root / "PhoneContactEvent.v1.avsc"
    path.write_text(path.read_text().replace('"name": "page"', '"name": "url"'))
    problems = check_lock(SchemaCatalog.load(root), read_lock(root / "fingerprints.lock"))
    assert len(problems) == 1
    assert problems[0].startswith("PhoneContactEvent v1 changed its fingerprint")
    assert "immutable" in problems[0]
    assert "new version, PhoneContactEvent.v4.avsc" in problems[0]


def test_a_version_missing_from_the_lock_is_refused(catalog: SchemaCatalog) -> None:
    contract = catalog.get("PhoneContactEvent", 2)
    locked = read_lock(LOCK_FILE)
    del locked[(contract.name, 2)]
    problems = check_lock(catalog, locked)
    assert problems == [
        f"PhoneContactEvent v2 is not in fingerprints.lock: once the version is final, "
        f"append the line '{lock_line(contract)}' (python -m schemas.lock prints it)"
    ]


def test_a_locked_version_cannot_disappear(catalog: SchemaCatalog) -> None:
    locked = read_lock(LOCK_FILE)
    locked[("be.comnexio.contactflow.FaxContactEvent", 1)] = "00" * 8
    assert check_lock(catalog, locked) == [
        "be.comnexio.contactflow.FaxContactEvent v1 is in fingerprints.lock but its .avsc is "
        "gone: published versions must stay in the catalog"
    ]


def test_a_malformed_lock_line_is_reported(tmp_path: Path) -> None:
    lock = tmp_path / "fingerprints.lock"
    lock.write_text("# comment\nbe.comnexio.contactflow.AuditEvent one b984247d7e7f2064\n")
    with pytest.raises(ContractLoadError, match=r"fingerprints\.lock line 2"):
        read_lock(lock)
