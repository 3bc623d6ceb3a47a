from __future__ import annotations

import pytest

from processors.crypto import FieldCipher, new_data_key
from processors.pii import compile_paths, rewrite_pii

PATHS = compile_paths(
    [
        "envelope.subject.phone",
        "envelope.subject.social_handle.handle",
        "payload[ChatTranscript].messages[].text",
        "payload[CallbackRequested].callback_number",
        "tags[]",
    ]
)


def _record() -> dict:
    return {
        "envelope": {"subject": {"phone": "+32471123456", "social_handle": None}},
        "payload": (
            "be.comnexio.contactflow.ChatTranscript",
            {"messages": [{"text": "bonjour"}, {"text": "au revoir"}]},
        ),
        "tags": ["a", "b"],
    }


def test_rewrites_every_string_leaf_and_skips_nulls_and_other_branches() -> None:
    record = _record()
    seen: list[tuple[str, str]] = []
    count = rewrite_pii(record, PATHS, lambda path, value: seen.append((path, value)) or "X")
    assert count == 5
    assert record["envelope"]["subject"]["phone"] == "X"
    assert [m["text"] for m in record["payload"][1]["messages"]] == ["X", "X"]
    assert record["tags"] == ["X", "X"]
    assert ("payload[ChatTranscript].messages[].text", "bonjour") in seen


def test_encrypt_then_decrypt_round_trips_with_the_rewrite_contract() -> None:
    cipher = FieldCipher("k-1", new_data_key())
    record = _record()
    rewrite_pii(record, PATHS, lambda path, value: cipher.encrypt(value, path))
    assert "bonjour" not in repr(record)
    assert "+32471123456" not in repr(record)
    rewrite_pii(record, PATHS, lambda path, token: cipher.decrypt(token, path))
    assert record == _record()


def test_malformed_path_is_refused() -> None:
    with pytest.raises(ValueError, match="malformed PII path"):
        compile_paths(["a..b"])
