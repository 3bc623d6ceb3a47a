from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from streams.errors import BrokerError
from streams.ops.broker import KafkaDistribution
from streams.settings import PROJECT_ROOT, Settings


@pytest.fixture
def infra(tmp_path: Path) -> Path:
    """A copy of infra/ whose pin file lists two small fake jars."""
    copy = tmp_path / "infra"
    shutil.copytree(PROJECT_ROOT / "infra" / "kafka", copy / "kafka")
    pins = []
    for name, body in (("a-1.jar", b"alpha"), ("b-2.jar", b"beta")):
        pins.append(f"{hashlib.sha256(body).hexdigest()}  {name}")
    (copy / "kafka" / "jars.sha256").write_text("\n".join(pins) + "\n")
    return copy


def test_version_comes_from_the_pom() -> None:
    distribution = KafkaDistribution(Settings())
    assert distribution.version.startswith("4.")
    assert len(distribution.pinned()) > 30
    assert "kafka_2.13-" + distribution.version + ".jar" in distribution.pinned()


def test_verify_reports_missing_extra_and_tampered_jars(infra: Path, tmp_path: Path) -> None:
    distribution = KafkaDistribution(Settings(infra_dir=infra, cache_dir=tmp_path / "cache"))
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "a-1.jar").write_bytes(b"alpha")
    assert distribution.verify(libs) == ["missing b-2.jar"]
    (libs / "b-2.jar").write_bytes(b"BETA")
    (libs / "c-3.jar").write_bytes(b"gamma")
    assert distribution.verify(libs) == ["unpinned c-3.jar", "checksum mismatch b-2.jar"]
    (libs / "b-2.jar").write_bytes(b"beta")
    (libs / "c-3.jar").unlink()
    assert distribution.verify(libs) == []


def test_missing_maven_is_a_clear_error(
    infra: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    distribution = KafkaDistribution(Settings(infra_dir=infra, cache_dir=tmp_path / "cache"))
    with pytest.raises(BrokerError, match="Maven"):
        distribution.install()
