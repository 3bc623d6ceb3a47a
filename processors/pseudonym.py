"""Keyed pseudonyms: what stands for a person everywhere a raw identifier must not.

`identifier_digest` is the subject index's key for one normalised identifier;
`subject_pseudonym` derives a subject's pseudonym from the digest it was first seen with,
so two workers meeting the same new person at once derive the same pseudonym. Both are
HMAC-SHA256 under a secret key from configuration, with a domain label so a digest can
never be replayed as a pseudonym.
"""

from __future__ import annotations

import hmac

from processors.identity import Identifier

_MIN_KEY_BYTES = 16


class PseudonymKeyError(ValueError):
    """The pseudonym key is missing or too short."""


class Pseudonymiser:
    """Holds the HMAC key; the key never appears in repr or str."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise PseudonymKeyError(f"the pseudonym key needs at least {_MIN_KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:
        return "Pseudonymiser(key=<hidden>)"

    def identifier_digest(self, identifier: Identifier) -> str:
        """Hex digest of `kind:value`; equal identifiers give equal digests."""
        message = f"id\x1f{identifier.kind.value}\x1f{identifier.value}".encode()
        return hmac.digest(self._key, message, "sha256").hex()

    def subject_pseudonym(self, first_digest: str, generation: int = 1) -> str:
        """The pseudonym of a subject first seen with the identifier of `first_digest`.

        A person erased and seen again is a new subject: `generation` counts the subjects
        that digest has started (the erased ones keep their pseudonyms as tombstones).
        """
        suffix = "" if generation == 1 else f"\x1f{generation}"
        message = f"subject\x1f{first_digest}{suffix}".encode()
        return "s-" + hmac.digest(self._key, message, "sha256").hex()[:32]
