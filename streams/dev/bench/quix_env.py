"""The pinned virtualenv the Quix Streams peer runs in, created on demand.

Why a separate virtualenv: quixstreams 3.28.1 (the newest when this was written) requires
`confluent-kafka<2.13`, `pydantic<2.14` and `pydantic-settings<2.16`; contactflow pins
confluent-kafka 2.16 and pydantic-settings 2.16. pip cannot satisfy both in one environment
(left to itself it silently falls back to quixstreams 0.5.7, an unrelated older library).
So the bench builds `<cache dir>/bench/quixstreams-<version>-<hash>/` with
`python -m venv --without-pip` and installs into it, through this interpreter's pip
(`pip --python <venv python> install`), `QUIX_REQUIREMENTS` plus the exact fastavro,
phonenumbers, PyYAML and cryptography versions of this environment, so the peer's Avro,
identity and AES-GCM code is the same as everyone else's. The directory name hashes the
requirement list: changing a pin builds a new one. A marker file is written last; a lock
file serialises builders.

The peer then runs as `<venv>/bin/python -m streams.dev.bench.quix_peer`, with PYTHONPATH set to
`source_shim()`: a directory of symlinks to our own `schemas`, `processors` and `streams`
packages only (never this environment's site-packages, which would shadow the venv's
confluent-kafka).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from streams.errors import ContactflowError

QUIX_VERSION: Final = "3.28.1"
QUIX_REQUIREMENTS: Final = (f"quixstreams=={QUIX_VERSION}", "confluent-kafka==2.12.2")
SHARED_WITH_PROJECT: Final = ("fastavro", "phonenumbers", "PyYAML", "cryptography")
_MARKER: Final = ".contactflow-ready"
_PACKAGES: Final = ("schemas", "processors", "streams")


def requirements() -> list[str]:
    """Everything installed into the Quix venv, all pinned to exact versions."""
    shared = [f"{name}=={importlib.metadata.version(name)}" for name in SHARED_WITH_PROJECT]
    return [*QUIX_REQUIREMENTS, *shared]


def quix_python(cache_dir: Path, say: Callable[[str], None]) -> Path:
    """The interpreter of the Quix venv under `cache_dir`, building the venv if needed."""
    wanted = requirements()
    digest = hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:12]
    home = cache_dir / "bench" / f"quixstreams-{QUIX_VERSION}-{digest}"
    python = home / "bin" / "python"
    home.parent.mkdir(parents=True, exist_ok=True)
    with (home.parent / f"{home.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / _MARKER).exists():
            return python
        say(f"installing Quix Streams {QUIX_VERSION} into {home} (first run only)")
        shutil.rmtree(home, ignore_errors=True)
        _run([sys.executable, "-m", "venv", "--without-pip", str(home)], "create the venv")
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "--quiet",
                "--no-compile",
                "--disable-pip-version-check",
                *wanted,
            ],
            "install Quix Streams",
        )
        (home / _MARKER).write_text("\n".join(wanted) + "\n")
    return python


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise ContactflowError(f"could not {what} for the Quix Streams peer:\n{tail}")


def source_shim(directory: Path) -> Path:
    """A directory holding only symlinks to our packages, for the peer's PYTHONPATH."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in _PACKAGES:
        package = Path(importlib.import_module(name).__file__ or "").resolve().parent
        link = directory / name
        if not link.exists():
            link.symlink_to(package, target_is_directory=True)
    return directory
