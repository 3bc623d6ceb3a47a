"""The two secrets of the data plane: the pseudonym HMAC key and the master wrapping key.

Both come from configuration (`CONTACTFLOW_PSEUDONYM_KEY`, `CONTACTFLOW_MASTER_KEY`,
base64). A developer machine without them gets keys generated once into
`<data dir>/secrets/` (mode 0600) with a warning: pseudonyms and ciphertexts must stay
stable across restarts, and production must set both. Values are never logged or printed.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from processors.crypto import KEY_BYTES
from streams.errors import ContactflowError
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataPlaneKeys:
    pseudonym_key: bytes = field(repr=False)
    master_key: bytes = field(repr=False)


def load_keys(settings: Settings) -> DataPlaneKeys:
    """The configured keys, or the development keys of this data directory."""
    return DataPlaneKeys(
        pseudonym_key=_key(settings.pseudonym_key, "PSEUDONYM_KEY", settings.data_dir, 32, 16),
        master_key=_key(settings.master_key, "MASTER_KEY", settings.data_dir, KEY_BYTES, KEY_BYTES),
    )


def _key(
    configured: SecretStr | None, name: str, data_dir: Path, generate: int, minimum: int
) -> bytes:
    if configured is not None:
        try:
            value = base64.b64decode(configured.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            raise ContactflowError(f"CONTACTFLOW_{name} is not valid base64") from None
        if len(value) < minimum or (minimum == KEY_BYTES and len(value) != KEY_BYTES):
            quantity = "exactly" if minimum == generate else "at least"
            raise ContactflowError(f"CONTACTFLOW_{name} must decode to {quantity} {minimum} bytes")
        return value
    path = data_dir / "secrets" / f"{name.lower()}.b64"
    if not path.exists():
        _create_once(path, base64.b64encode(os.urandom(generate)).decode())
        log.warning(
            "CONTACTFLOW_%s is not set: using a development key in %s; "
            "set it explicitly in production", name, path,
        )  # fmt: skip
    return base64.b64decode(path.read_text().strip())


def _create_once(path: Path, content: str) -> None:
    """Write a new file atomically; when two processes race, the first one's file wins."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(content)
        os.link(temporary, path)  # atomic, and refuses to replace another process's key
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
