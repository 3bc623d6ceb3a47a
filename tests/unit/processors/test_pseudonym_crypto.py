from __future__ import annotations

import pytest

from processors.crypto import (
    DecryptionFailed,
    FieldCipher,
    KeyWrapper,
    is_token,
    new_data_key,
    unwrap_key,
    wrap_key,
)
from processors.identity import normalise_email, normalise_phone
from processors.pseudonym import Pseudonymiser, PseudonymKeyError

KEY = b"k" * 32


def test_same_identifier_same_digest_other_key_other_digest() -> None:
    one = Pseudonymiser(KEY).identifier_digest(normalise_phone("0471 12 34 56"))
    assert one == Pseudonymiser(KEY).identifier_digest(normalise_phone("+32471123456"))
    assert one != Pseudonymiser(b"j" * 32).identifier_digest(normalise_phone("+32471123456"))
    assert "471" not in one


def test_digest_and_pseudonym_are_domain_separated() -> None:
    pseudonymiser = Pseudonymiser(KEY)
    digest = pseudonymiser.identifier_digest(normalise_email("a@example.org"))
    pseudonym = pseudonymiser.subject_pseudonym(digest)
    assert pseudonym.startswith("s-")
    assert digest[:32] not in pseudonym


def test_short_key_refused_and_key_hidden() -> None:
    with pytest.raises(PseudonymKeyError):
        Pseudonymiser(b"short")
    assert "k" * 16 not in repr(Pseudonymiser(KEY))


def test_field_round_trip_and_binding() -> None:
    cipher = FieldCipher("key-1", new_data_key())
    token = cipher.encrypt("Bonjour, ma facture", "payload.body")
    assert is_token(token)
    assert "facture" not in token
    assert cipher.decrypt(token, "payload.body") == "Bonjour, ma facture"
    with pytest.raises(DecryptionFailed):
        cipher.decrypt(token, "payload.subject")  # moved to another field
    with pytest.raises(DecryptionFailed):
        FieldCipher("key-1", new_data_key()).decrypt(token, "payload.body")  # other key


def test_wrapped_key_opens_only_with_master_and_id() -> None:
    master, data_key = new_data_key(), new_data_key()
    wrapped = wrap_key(master, "key-1", data_key)
    assert data_key not in wrapped
    assert unwrap_key(master, "key-1", wrapped) == data_key
    with pytest.raises(DecryptionFailed):
        unwrap_key(master, "key-2", wrapped)
    with pytest.raises(DecryptionFailed):
        unwrap_key(new_data_key(), "key-1", wrapped)


def test_fields_encrypted_together_decrypt_one_by_one_with_fresh_nonces() -> None:
    cipher = FieldCipher("key-1", new_data_key())
    fields = [("payload.body", "Bonjour"), ("payload.body", "Bonjour"), ("envelope.a", "x")]
    tokens = [token.decode("ascii") for token in cipher.encrypt_fields(fields)]
    assert all(is_token(token) for token in tokens)
    assert len({token[4:20] for token in tokens}) == 3  # the nonces all differ
    assert [cipher.decrypt(t, path) for t, (path, _) in zip(tokens, fields, strict=True)] == [
        "Bonjour", "Bonjour", "x",
    ]  # fmt: skip
    with pytest.raises(DecryptionFailed):
        cipher.decrypt(tokens[2], "payload.body")  # bound to its own path
    assert cipher.encrypt_fields([]) == []


def test_key_wrapper_matches_the_functions_and_hides_the_master_key() -> None:
    master, data_key = new_data_key(), new_data_key()
    wrapper = KeyWrapper(master)
    assert unwrap_key(master, "key-1", wrapper.wrap("key-1", data_key)) == data_key
    assert wrapper.unwrap("key-1", wrap_key(master, "key-1", data_key)) == data_key
    with pytest.raises(DecryptionFailed):
        wrapper.unwrap("key-2", wrapper.wrap("key-1", data_key))
    assert master.hex() not in repr(wrapper)
    with pytest.raises(ValueError, match="master key"):
        KeyWrapper(b"short")
