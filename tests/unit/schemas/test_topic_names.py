"""Every topic is spelled once, in schemas/topic_names.py, and agrees with infra/topics.yaml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from schemas import topic_names

ROOT = Path(__file__).resolve().parents[3]
_LITERAL = re.compile(r"[\"'](?:contact|privacy|retention|recordings)\.[a-z.-]+\.v\d+[\"']")


def test_the_module_declares_exactly_the_yaml_topics() -> None:
    declared = yaml.safe_load((ROOT / "infra" / "topics.yaml").read_text())["topics"]
    assert {t["name"] for t in declared} == topic_names.DECLARED


def test_raw_topic_refuses_an_unknown_channel() -> None:
    assert topic_names.raw_topic("chat") == "contact.raw.chat.v1"
    with pytest.raises(ValueError, match="unknown channel 'fax'"):
        topic_names.raw_topic("fax")


def test_no_module_spells_a_topic_name_itself() -> None:
    """Code outside schemas/topic_names.py names topics through its constants."""
    spelled = {
        str(path.relative_to(ROOT)): _LITERAL.findall(path.read_text())
        for package in ("streams", "processors", "schemas")
        for path in (ROOT / package).rglob("*.py")
        if path.name != "topic_names.py" and "/dev/" not in str(path)
    }
    assert {path: found for path, found in spelled.items() if found} == {}
