"""The example producer events are valid, realistic and obviously fake."""

from __future__ import annotations

import json
import re

import pytest

from schemas import CHANNEL_CONTRACTS, SchemaCatalog, from_json
from schemas.examples import CHANNELS, example_events


def test_examples_cover_every_channel() -> None:
    assert set(CHANNELS) == set(CHANNEL_CONTRACTS)


@pytest.mark.parametrize("channel", CHANNELS)
def test_examples_pass_from_json_against_the_latest_contract(
    catalog: SchemaCatalog, channel: str
) -> None:
    events = example_events(channel)
    assert 2 <= len(events) <= 4
    contract = catalog.latest(CHANNEL_CONTRACTS[channel])
    for event in events:
        json.loads(json.dumps(event))  # plain JSON: what a producer writes in a .jsonl line
        from_json(contract, event)
    assert len({event["envelope"]["event_id"] for event in events}) == len(events)


@pytest.mark.parametrize("channel", CHANNELS)
def test_examples_use_only_fake_identifiers(channel: str) -> None:
    text = json.dumps(example_events(channel), ensure_ascii=False)
    for address in re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", text):
        assert address.rsplit("@", 1)[1].split(">")[0].endswith(("example.org", "example"))
    for number in re.findall(r"\+32[\d ]+", text):
        assert number.startswith("+32 471 ")


def test_examples_are_fresh_copies() -> None:
    first = example_events("phone")
    first[0]["kind"] = "changed"
    assert example_events("phone")[0]["kind"] == "inbound_call"


def test_unknown_channel_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown channel 'fax'"):
        example_events("fax")
