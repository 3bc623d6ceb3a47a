from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import TopicError
from streams.settings import PROJECT_ROOT
from streams.topics import load_topics

TOPICS = PROJECT_ROOT / "infra" / "topics.yaml"
DESIGN_TOPICS = {
    *(f"contact.raw.{c}.v1" for c in ("phone", "chat", "email", "survey", "social")),
    "contact.ores.v1", "contact.comnexio.v1", "contact.restricted.v1", "recordings.standard.v1",
    "recordings.hold.v1", "retention.signals.v1",
    "recordings.expired.v1", "contact.deadletter.v1", "contact.quarantine.v1",
    "privacy.requests.v1", "privacy.controller.ores.v1", "privacy.instructions.v1",
    "privacy.erasure.v1", "privacy.restriction.v1", "privacy.acks.v1",
    "privacy.subject-state.v1", "privacy.audit.v1",
    "reporting.facts.v1", "reporting.cells-changelog.v1", "reporting.kpi.v1",
}  # fmt: skip


def test_every_design_topic_is_declared_once() -> None:
    catalog = load_topics(TOPICS)
    assert {spec.name for spec in catalog.specs} == DESIGN_TOPICS


def test_compacted_topics_are_the_keyed_state_ones() -> None:
    catalog = load_topics(TOPICS)
    compacted = {s.name for s in catalog.specs if "compact" in s.configs["cleanup.policy"]}
    assert compacted == {"recordings.standard.v1", "recordings.hold.v1", "privacy.subject-state.v1",
                         "reporting.cells-changelog.v1", "reporting.kpi.v1"}  # fmt: skip


def test_raw_topics_holding_clear_pii_expire_within_three_days() -> None:
    catalog = load_topics(TOPICS)
    for spec in catalog.specs:
        if spec.name.startswith("contact.raw."):
            assert int(spec.configs["retention.ms"]) <= 3 * 86_400_000, spec.name


def test_profiles_set_replication() -> None:
    local = load_topics(TOPICS, profile="local").spec("contact.ores.v1")
    production = load_topics(TOPICS, profile="production").spec("contact.ores.v1")
    assert (local.replication_factor, local.configs["min.insync.replicas"]) == (1, "1")
    assert (production.replication_factor, production.configs["min.insync.replicas"]) == (3, "2")


def test_every_value_schema_is_a_known_contract() -> None:
    from schemas.catalog import SchemaCatalog

    schemas = SchemaCatalog.load()
    for spec in load_topics(TOPICS).specs:
        assert schemas.latest(spec.value_schema) is not None, spec.name


def test_prefix_applies_to_names() -> None:
    catalog = load_topics(TOPICS, prefix="t1.")
    assert catalog.name("privacy.acks.v1") == "t1.privacy.acks.v1"
    with pytest.raises(TopicError, match="not declared"):
        catalog.name("privacy.nope.v1")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("topics: {}\n", "'topics' list"),
        ("profiles: {local: {replication_factor: 1}}\ntopics:\n  - {name: a, partitions: 0,"
         " key: k, value_schema: S}\n", "positive integer"),
        ("profiles: {local: {replication_factor: 1}}\ntopics:\n  - {name: a, partitions: 1,"
         " key: k, value_schema: S, retention: 5}\n", "unknown keys"),
        ("profiles: {local: {replication_factor: 1}}\ntopics:\n  - {name: a, partitions: 1,"
         " key: k, value_schema: S}\n  - {name: a, partitions: 1, key: k, value_schema: S}\n",
         "declared twice"),
        ("profiles: {prod: {replication_factor: 3}}\ntopics: []\n", "unknown topic profile"),
        ("topics: [unclosed\n", "cannot read"),
    ],
)  # fmt: skip
def test_bad_files_are_refused_clearly(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text(body)
    with pytest.raises(TopicError, match=message):
        load_topics(path)
