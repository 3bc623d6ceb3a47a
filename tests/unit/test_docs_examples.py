"""The example files the README points producers to stay valid against the contracts."""

from __future__ import annotations

import json

import pytest

from schemas.catalog import SchemaCatalog
from schemas.validation import from_json
from streams.sdk.producer import CHANNELS
from streams.settings import PROJECT_ROOT
from streams.topics import load_topics

EXAMPLES = PROJECT_ROOT / "docs" / "examples"


@pytest.mark.parametrize("channel", CHANNELS)
def test_example_file_of_each_channel_is_valid(channel: str) -> None:
    schemas = SchemaCatalog.load()
    topics = load_topics(PROJECT_ROOT / "infra" / "topics.yaml")
    contract = schemas.latest(topics.spec(f"contact.raw.{channel}.v1").value_schema)
    lines = (EXAMPLES / f"{channel}.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 2
    kinds = {from_json(contract, json.loads(line))["kind"] for line in lines}
    assert len(kinds) >= 2, "each example file shows more than one kind of event"
