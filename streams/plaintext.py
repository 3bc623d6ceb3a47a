"""Reading the personal data of a tagged event back, for those allowed to hold the keys.

Used by data-subject access and portability exports and by tests that prove erasure:
once a subject's key is shredded, `open_event` raises KeyUnavailable for every event of
that subject, in every topic and copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from processors.crypto import FieldCipher, KeyUnavailable, unwrap_key
from processors.pii import compile_paths, rewrite_pii
from schemas.serde import AvroSerde
from streams.ledger import KeyVault, UnknownKeyError

WrappedKeyLookup = Callable[[str], bytes | None]


def vault_lookup(session: Session) -> WrappedKeyLookup:
    """Wrapped keys from the ledger's vault; None when the key was shredded or never existed."""
    vault = KeyVault(session)

    def lookup(key_id: str) -> bytes | None:
        try:
            return vault.get(key_id)
        except UnknownKeyError:
            return None

    return lookup


def open_event(
    serde: AvroSerde, tagged: dict[str, Any], master_key: bytes, wrapped_key: WrappedKeyLookup
) -> dict[str, Any]:
    """The raw channel event inside a tagged (or quarantined) event, PII decrypted."""
    key_id = tagged["key_id"]
    wrapped = wrapped_key(key_id)
    if wrapped is None:
        raise KeyUnavailable(f"key {key_id} is shredded or unknown: the data is erased")
    cipher = FieldCipher(key_id, unwrap_key(master_key, key_id, wrapped))
    contract, record = serde.deserialize(tagged["event"])
    rewrite_pii(
        record, compile_paths(contract.pii_fields), lambda path, token: cipher.decrypt(token, path)
    )
    return record
