"""Where privacy.requests.v1 is cut, and what the evidence says about clear copies."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streams.control.privacy.evidence import clear_copies, render_report
from streams.control.privacy.request_cut import cut_offset, key_request_id
from streams.topics import TopicCatalog, load_topics

INFRA = Path(__file__).resolve().parents[3] / "infra"
DAY_MS = 86_400_000


@pytest.mark.parametrize(
    ("seen", "end", "cut"),
    [
        ([], 7, 7),  # only markers or aborted records read: up to the reader's position
        ([(3, True), (4, True)], 5, 5),
        ([(3, True), (5, True)], 8, 8),  # a gap (an aborted record, a marker) goes too
        ([(3, False), (4, True)], 5, 3),  # a record not taken in holds every one behind it
        ([(3, True), (4, False), (5, True)], 6, 4),
    ],
)
def test_the_cut_stops_before_the_first_record_not_taken_in(
    seen: list[tuple[int, bool]], end: int, cut: int
) -> None:
    assert cut_offset(seen, end) == cut


@pytest.mark.parametrize(
    ("key", "request_id"),
    [(b"dsr-1", "dsr-1"), (None, None), (b"", None), (b"\xff\xfe", None),
     (b"x" * 129, None), (b"a\nb", None)],
)  # fmt: skip
def test_a_key_is_an_audit_request_id_only_when_it_can_be_one(
    key: bytes | None, request_id: str | None
) -> None:
    assert key_request_id(key) == request_id


def test_clear_copies_count_retention_plus_segment_from_completion() -> None:
    topics = load_topics(INFRA / "topics.yaml")
    closed = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    copies = clear_copies(topics, closed)
    raw, dead = copies["raw_topics"], copies["dead_letters"]
    assert raw["topics"] == [f"contact.raw.{c}.v1"
                             for c in ("chat", "email", "phone", "social", "survey")]  # fmt: skip
    assert (raw["retention_ms"], raw["segment_ms"]) == (3 * DAY_MS, 7 * DAY_MS)
    assert raw["written_before"] == "2026-05-04T10:00:00Z"
    assert raw["gone_by"] == "2026-05-14T11:05:00Z"  # + 3 d + 7 d + 1 h ahead + 5 min check
    assert (dead["retention_ms"], dead["gone_by"]) == (14 * DAY_MS, "2026-05-25T11:05:00Z")
    assert "deadletters purge" in dead["purge"]
    assert clear_copies(topics, None)["raw_topics"]["gone_by"] is None  # not completed yet


def test_a_declared_segment_ms_tightens_the_bound() -> None:
    topics = load_topics(INFRA / "topics.yaml")
    specs = tuple(
        replace(s, configs={**s.configs, "segment.ms": str(DAY_MS)})
        if s.name.startswith("contact.raw.") else s
        for s in topics.specs
    )  # fmt: skip
    raw = clear_copies(TopicCatalog(specs), datetime(2026, 5, 4, tzinfo=UTC))["raw_topics"]
    assert (raw["segment_ms"], raw["gone_by"]) == (DAY_MS, "2026-05-08T01:05:00Z")


def test_the_rendered_report_names_the_record_and_the_windows() -> None:
    copies = clear_copies(load_topics(INFRA / "topics.yaml"), None)
    lines: list[str] = []
    render_report({
        "request": {"request_id": "dsr-1", "type": "erasure", "state": "awaiting_acks",
                    "received_at": None, "verified_by": None, "verified_at": None,
                    "extended_until": None, "due_at": None, "overdue": False,
                    "subjects": [], "controllers": [], "decision": None},
        "found": {}, "versions": {"policy": None, "consumers": "1"}, "instructions": [],
        "execution": [], "consumers": [],
        "timings": {"commands_emitted_s": None, "all_answers_s": None, "closed_s": None},
        "request_record": {"topic": "privacy.requests.v1", "via_topic": True,
                           "removed_at": "2026-05-04T10:00:02Z", "records_removed": 1},
        "clear_copies": copies,
    }, lines.append)  # fmt: skip
    text = "\n".join(lines)
    assert "request record on privacy.requests.v1: removed at 2026-05-04T10:00:02Z" in text
    assert "kept at least 3 d after each was written" in text
    assert "gone by completion + 10 d 1 h 5 min at the latest" in text
    assert "kept at least 14 d" in text
    assert "contactflow deadletters purge --older-than AGE" in text
    assert "None" not in text, "a field not known yet says so, never None"
    assert "identity not proven yet" in text
    assert "commands emitted not yet" in text
