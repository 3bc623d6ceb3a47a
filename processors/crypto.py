"""Crypto-shredding primitives: per-subject data keys wrapped by a master key.

Each subject's personal-data fields are encrypted with that subject's own AES-256-GCM data
key; the ledger's key vault stores the data key only wrapped (encrypted) by the master key.
Deleting a subject's wrapped key makes every copy of its ciphertext, in every topic,
replica, backup or consumer, unreadable at once.

An encrypted field is a text token `cf1.<base64url(nonce | ciphertext | tag)>`, so it fits
the string fields of the contracts. The key id and the field path are authenticated data:
a token moved to another field or subject fails to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

TOKEN_PREFIX = "cf1."  # noqa: S105 - a format marker, not a secret
KEY_BYTES = 32
_NONCE_BYTES = 12
_PREFIX_BYTES = TOKEN_PREFIX.encode()
_URLSAFE = bytes.maketrans(b"+/", b"-_")  # base64.urlsafe_b64encode's alphabet


class KeyUnavailable(LookupError):
    """The subject's key was shredded (or never existed): its data cannot be read."""


class DecryptionFailed(ValueError):
    """A token that is not valid for this key and field (tampered, moved or foreign)."""


def new_data_key() -> bytes:
    """A fresh random AES-256 key."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def _check_key(key: bytes, what: str) -> None:
    if len(key) != KEY_BYTES:
        raise ValueError(f"the {what} must be {KEY_BYTES} bytes")


class KeyWrapper:
    """Wraps and unwraps data keys under one master key (set up once, for many keys)."""

    __slots__ = ("_aead",)

    def __init__(self, master_key: bytes) -> None:
        _check_key(master_key, "master key")
        self._aead = AESGCM(master_key)

    def __repr__(self) -> str:
        return "KeyWrapper(<master key>)"

    def wrap(self, key_id: str, data_key: bytes) -> bytes:
        """The data key encrypted under the master key, bound to its key id."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, key_id.encode())

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        """The data key back from its wrapped form; DecryptionFailed if it was not ours."""
        try:
            return self._aead.decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], key_id.encode()
            )
        except InvalidTag:
            raise DecryptionFailed("the wrapped key does not open with this master key") from None


def wrap_key(master_key: bytes, key_id: str, data_key: bytes) -> bytes:
    """The data key encrypted under the master key, bound to its key id."""
    return KeyWrapper(master_key).wrap(key_id, data_key)


def unwrap_key(master_key: bytes, key_id: str, wrapped: bytes) -> bytes:
    """The data key back from its wrapped form; DecryptionFailed if it was not ours."""
    return KeyWrapper(master_key).unwrap(key_id, wrapped)


class FieldCipher:
    """Encrypts and decrypts the personal-data fields of one subject under one key."""

    __slots__ = ("_aads", "_aead", "key_id")

    def __init__(self, key_id: str, data_key: bytes) -> None:
        _check_key(data_key, "data key")
        self.key_id = key_id
        self._aead = AESGCM(data_key)
        self._aads: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"FieldCipher(key_id={self.key_id!r})"

    def encrypt(self, text: str, field_path: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)  # fresh for every field: never pooled or reused
        sealed = self._aead.encrypt(nonce, text.encode(), self._aad(field_path))
        encoded = binascii.b2a_base64(nonce + sealed, newline=False).translate(_URLSAFE)
        return TOKEN_PREFIX + encoded.decode("ascii")

    def encrypt_fields(self, fields: Sequence[tuple[str, str]]) -> list[bytes]:
        """`encrypt(text, path)` of each (path, text), as ASCII bytes: one draw of random
        bytes for all the nonces (each still fresh and random), the AAD kept per path."""
        nonces = os.urandom(_NONCE_BYTES * len(fields))
        encrypt, aads, tokens = self._aead.encrypt, self._aads, []
        for index, (path, text) in enumerate(fields):
            aad = aads.get(path)
            if aad is None:
                aad = aads[path] = self._aad(path)
            nonce = nonces[index * _NONCE_BYTES : (index + 1) * _NONCE_BYTES]
            sealed = binascii.b2a_base64(nonce + encrypt(nonce, text.encode(), aad), newline=False)
            tokens.append(_PREFIX_BYTES + sealed.translate(_URLSAFE))
        return tokens

    def decrypt(self, token: str, field_path: str) -> str:
        if not is_token(token):
            raise DecryptionFailed(f"{field_path}: not an encrypted field")
        try:
            blob = base64.urlsafe_b64decode(token[len(TOKEN_PREFIX) :])
            plain = self._aead.decrypt(
                blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], self._aad(field_path)
            )
        except (InvalidTag, ValueError):
            raise DecryptionFailed(f"{field_path}: does not decrypt with this key") from None
        return plain.decode()

    def _aad(self, field_path: str) -> bytes:
        return f"{self.key_id}\x1f{field_path}".encode()


def is_token(value: object) -> bool:
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX)
