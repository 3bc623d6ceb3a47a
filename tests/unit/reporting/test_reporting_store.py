"""One reporting app per RocksDB store: a second one is refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import ContactflowError
from streams.reporting import app


def test_a_second_app_on_the_same_store_is_refused(tmp_path: Path) -> None:
    app._hold_store(tmp_path)
    try:
        with pytest.raises(ContactflowError, match="another reporting app is using"):
            app._hold_store(tmp_path)
        other = tmp_path / "other"
        other.mkdir()
        app._hold_store(other)  # another data directory is free
    finally:
        for handle in app._held:
            handle.close()
        app._held.clear()
