"""The layout is the architecture: processors/ and schemas/ stay free of I/O frameworks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_FRAMEWORKS = {"faust", "confluent_kafka", "sqlalchemy", "opentelemetry", "aiokafka", "alembic"}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", ["processors", "schemas"])
def test_pure_packages_import_no_io_framework(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_roots(path) & IO_FRAMEWORKS)
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_processors_do_not_import_streams() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "processors").rglob("*.py")
        if "streams" in _imported_roots(path)
    ]
    assert offenders == []


def test_layout_check_catches_an_offender(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import os\nfrom confluent_kafka import Producer\n")
    assert _imported_roots(sample) & IO_FRAMEWORKS == {"confluent_kafka"}


def test_runtime_workers_do_not_load_the_broker_launcher_nor_dev_tools() -> None:
    """The router, the control plane and the SDKs run beside a broker someone else runs:
    importing them loads neither the Maven/Java launcher nor the bench and demo."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "import streams.router.worker, streams.control.app, streams.sdk.producer\n"
        "import streams.sdk.downstream.client, streams.bootstrap\n"
        "print(sorted(m for m in sys.modules if m.startswith(('streams.ops.broker', "
        "'streams.dev'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_streams_root_keeps_only_shared_modules() -> None:
    """streams/ is grouped by what it serves; only the shared core stays at its root."""
    loose = sorted(p.name for p in (ROOT / "streams").glob("*.py") if p.name != "__init__.py")
    groups = sorted(p.name for p in (ROOT / "streams").iterdir() if (p / "__init__.py").exists())
    assert groups == [
        "cli", "control", "dev", "kafka", "ledger", "ops", "reporting", "router", "runtime", "sdk"
    ]  # fmt: skip
    assert len(loose) <= 10, loose


def test_only_the_router_holds_unwrapped_data_keys() -> None:
    """Issue 15 holds every holder of unwrapped keys to the router's bounds (memory budget,
    TTL, erasure). The privacy app, the reporting app and the SDKs keep none: they never
    build a cipher themselves, and the one reader of personal data among them, the right
    of access export, goes through `streams.plaintext.open_event`, which unwraps a key
    for one event and keeps nothing."""
    cipher_makers = {"FieldCipher", "KeyWrapper", "new_data_key", "unwrap_key"}
    offenders = {}
    for package in ("control", "reporting", "sdk"):
        for path in (ROOT / "streams" / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            names = {
                alias.name
                for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)
                for alias in node.names
            }
            if names & cipher_makers:
                offenders[str(path.relative_to(ROOT))] = sorted(names & cipher_makers)
    assert offenders == {}
    plaintext = (ROOT / "streams" / "plaintext.py").read_text()
    assert "cache" not in plaintext.lower()  # no key is kept between two events
