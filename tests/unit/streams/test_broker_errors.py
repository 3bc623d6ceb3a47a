from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest

from streams.errors import BrokerError
from streams.ops.broker import Broker
from streams.settings import Settings


def test_missing_java_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    broker = Broker(Settings(data_dir=tmp_path, broker_port=1, controller_port=2))
    with pytest.raises(BrokerError, match="Java is not installed"):
        broker.up()


def test_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = Broker(Settings(data_dir=tmp_path, broker_port=port, controller_port=port + 1))
        with pytest.raises(BrokerError, match=f"port {port} is already in use"):
            broker.up()


def test_status_without_a_broker(tmp_path: Path) -> None:
    broker = Broker(Settings(data_dir=tmp_path))
    state = broker.status()
    assert (state.running, state.pid) == (False, None)
    assert broker.down() is False


def test_stale_pid_file_is_ignored(tmp_path: Path) -> None:
    broker = Broker(Settings(data_dir=tmp_path))
    broker.home.mkdir(parents=True)
    broker.pid_file.write_text("999999999")
    assert broker.pid() is None
    assert not broker.pid_file.exists()


def test_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage tool reads an id starting with `-` as an option: such a draw is redone."""
    import uuid as uuid_module

    from streams.ops import broker

    draws = iter([uuid_module.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid_module.UUID(int=7)])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))
    cluster_id = broker._kraft_cluster_id()
    assert cluster_id == base64.urlsafe_b64encode(uuid_module.UUID(int=7).bytes).decode()[:22]
    assert base64.urlsafe_b64encode(b"\xf8" + b"\x00" * 15).startswith(b"-")  # the first draw
