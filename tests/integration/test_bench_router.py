"""`contactflow bench router` on a small workload: every system, the real router included,
handles every event exactly once, and the summary line has the promised form; with
`--same-work`, the Quix app doing the router's work writes what the router writes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from processors.crypto import FieldCipher
from processors.pii import compile_paths, rewrite_pii
from processors.pseudonym import Pseudonymiser
from schemas.catalog import SchemaCatalog
from schemas.serde import AvroSerde
from streams.bootstrap import Container
from streams.dev.bench.harness import GroupProgress
from streams.dev.bench.router_bench import run_router_bench
from streams.dev.bench.router_runner import run_real_router
from streams.dev.bench.same_work import SameWorkTagger
from streams.dev.bench.spec import COMNEXIO, ORES, QUARANTINE, RECORDINGS, RESTRICTED, SIGNALS
from streams.dev.bench.tagging import load_policy
from streams.dev.bench.workload import encode_workload, generate_workload
from streams.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

EVENTS = 2000
SUMMARY = re.compile(
    r"router_vs_limit=\d+\.\d{2} router_vs_faust=\d+\.\d{2} router_vs_quix=\d+\.\d{2}"
)
SAME_WORK_SUMMARY = re.compile(SUMMARY.pattern + r" router_vs_quix_same_work=\d+\.\d{2}")


def test_bench_measures_every_system_on_the_same_workload(container: Container) -> None:
    progress: list[str] = []

    result = run_router_bench(container, EVENTS, progress.append, router=run_real_router)

    for run in (result.limit, result.quix, result.faust, result.router):
        assert run.events == EVENTS
        assert run.outputs == EVENTS, run.name  # every event processed exactly once
        assert run.events_per_s > 0
        assert run.peak_rss_bytes > 0
    assert SUMMARY.fullmatch(result.summary_line())
    assert result.report_lines()[-1] == result.summary_line()
    assert result.quix_same_work is None  # not asked for: the line stays as it was
    leftovers = [
        name
        for name in container.admin().list_topics(timeout=30).topics
        if name.startswith(f"{container.settings.topic_prefix}bench-")
    ]
    assert leftovers == []
    assert any("limit done" in line for line in progress)
    text = "\n".join(progress).casefold()  # progress shows counts and rates, never PII
    for item in generate_workload(EVENTS, 20251126):
        subject = item.event["envelope"]["subject"]
        for value in (subject.get("phone"), subject.get("email"), subject.get("customer_ref")):
            assert value is None or value.casefold() not in text


def test_group_progress_counts_committed_input_offsets(container: Container) -> None:
    """What a RouterRunner can poll: exact progress of a transactional loop's group."""
    config = container.settings.kafka_client_config()
    topic = container.topics.name("contact.raw.survey.v1")
    producer = Producer(config)
    for i in range(30):
        producer.produce(topic, b"x", str(i).encode())
    assert producer.flush(30) == 0
    group = f"{container.settings.topic_prefix}progress"
    progress = GroupProgress(container.admin(), group, [topic])
    assert progress.count() == 0
    consumer = Consumer(
        {**config, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    seen = 0
    try:
        while seen < 30:
            seen += len(consumer.consume(30, 1.0))
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert progress.count() == 30


def test_same_work_peer_writes_what_the_router_writes(container: Container) -> None:
    result = run_router_bench(
        container, EVENTS, lambda _line: None, router=run_real_router, faust_cap=500,
        same_work=True,
    )  # fmt: skip

    same = result.quix_same_work
    assert same is not None
    assert same.events == same.outputs == EVENTS  # inputs committed in its transactions
    assert same.events_per_s > 0
    assert same.cpu_s > 0
    assert SAME_WORK_SUMMARY.fullmatch(result.summary_line())
    assert result.report_lines()[-1] == result.summary_line()
    peer, router = result.quix_same_work_outputs, result.router_outputs
    assert peer is not None
    assert peer == router  # as many tagged events, retention inputs and hold signals
    assert peer.tagged == EVENTS
    assert peer.recordings > 0
    assert peer.signals > 0


def test_same_work_tagging_encrypts_every_pii_field_under_the_subjects_key() -> None:
    """The peer's per-event work, in this process (no broker needed)."""
    catalog = SchemaCatalog.load()
    outputs = {ORES: "o", COMNEXIO: "c", QUARANTINE: "q", RESTRICTED: "r", RECORDINGS: "rec",
               SIGNALS: "sig"}  # fmt: skip
    policy = load_policy(PROJECT_ROOT / "infra" / "policy.yaml")
    tagger = SameWorkTagger(catalog, policy, Pseudonymiser(b"p" * 32), b"m" * 32, outputs)
    serde = AvroSerde(catalog)
    workload = generate_workload(600, 20251126)
    plain = {item.event["envelope"]["event_id"]: item.event for item in workload}
    encoded = encode_workload(workload, catalog)
    topics: dict[str, int] = {}
    for raw in (value for items in encoded.values() for _key, value in items):
        for routed in tagger.tag(raw):
            topics[routed.topic] = topics.get(routed.topic, 0) + 1
            if routed.topic not in ("o", "c"):
                continue
            _, tagged = serde.deserialize(routed.value, "TaggedContactEvent")
            subject = tagged["governance"]["subject_pseudonym"]
            assert routed.key == subject.encode()
            key_id, _wrapped, cipher = tagger.vault[subject]
            assert tagged["key_id"] == key_id
            writer, sealed = serde.deserialize(tagged["event"])
            opened = _decrypted(sealed, writer.pii_fields, cipher)
            original = plain[tagged["event_id"]]["envelope"]["subject"]
            assert opened["envelope"]["subject"]["phone"] == original.get("phone")
            assert opened["envelope"]["subject"]["email"] == original.get("email")
    assert topics["o"] + topics["c"] + topics.get("q", 0) == len(workload)
    assert topics["rec"] > 0
    assert topics["sig"] > 0
    assert len(tagger.subjects) > len(tagger.vault)  # several identifiers for one person


def _decrypted(
    record: dict[str, Any], paths: tuple[str, ...], cipher: FieldCipher
) -> dict[str, Any]:
    """`record` with every PII token decrypted; each one must be a token of `cipher`."""
    rewrite_pii(record, compile_paths(paths), lambda path, token: cipher.decrypt(token, path))
    return record
