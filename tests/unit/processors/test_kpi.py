"""The reporting core (issue 14): Brussels windows, per-event measures, the anonymity
threshold k, idempotent application per source offset, lateness, figures and KPIs.

Every expectation below is computed by hand in the test (times, labels, sums), never by
calling the code under test a second time.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from processors import kpi
from processors.kpi import (
    BRUSSELS,
    DAY,
    HOUR,
    KPI_NAMES,
    WEEK,
    Cell,
    Entry,
    Group,
    KpiConfig,
    Window,
    apply_fact,
    batch_facts,
    cell_key,
    cells_to_forget,
    counts_for_reporting,
    entries_of,
    facts_of,
    figure_of,
    group_of,
    is_late,
    kpis_of,
    measures_of,
    parse_cell_key,
    routed_time,
    subject_tag,
    window_of_label,
    windows_of,
)
from schemas.catalog import SchemaCatalog
from schemas.serde import AvroSerde

AVRO = Path(__file__).resolve().parents[3] / "schemas" / "avro"
CONFIG = KpiConfig()  # service level 20 s, k = 5, grace 6 h
K = 5
GRACE = timedelta(hours=6)
NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)

# Thursday 2026-01-15 09:30 UTC is 10:30 in Brussels (CET, +01:00), ISO week 2026-W03.
T0 = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
HOUR_T0 = Window(
    HOUR,
    datetime(2026, 1, 15, 9, 0, tzinfo=UTC),
    datetime(2026, 1, 15, 10, 0, tzinfo=UTC),
    "2026-01-15 10:00 +01:00",
)
DAY_T0 = Window(
    DAY,
    datetime(2026, 1, 14, 23, 0, tzinfo=UTC),
    datetime(2026, 1, 15, 23, 0, tzinfo=UTC),
    "2026-01-15",
)
WEEK_T0 = Window(
    WEEK,
    datetime(2026, 1, 11, 23, 0, tzinfo=UTC),  # Monday 2026-01-12 00:00 CET
    datetime(2026, 1, 18, 23, 0, tzinfo=UTC),  # Monday 2026-01-19 00:00 CET
    "2026-W03",
)

OUTAGE = Group("phone", "gosselies", "fr", "ores-outage-fr")
OUTAGE_HOUR_KEY = "hour|2026-01-15 10:00 +01:00|phone|gosselies|fr|ores-outage-fr"
OUTAGE_DAY_KEY = "day|2026-01-15|phone|gosselies|fr|ores-outage-fr"
OUTAGE_WEEK_KEY = "week|2026-W03|phone|gosselies|fr|ores-outage-fr"

# What a person left in the input: none of it may reach a fact or a figure.
PSEUDONYM = "s-3f9c2a7d41e8b6059c1d2e3f4a5b6c7d"
PHONE = "+32471123456"
EMAIL = "jan.peeters@example.be"
CUSTOMER_REF = "ORES-000123456"
AGENT = "agent-0042"
CONTACT_ID = "contact-8f2e51"
EVENT_ID = "0b7e4c1a-7d2f-4a51-9c3e-5f8a2b6d1e90"
FREE_TEXT = "Jan Peeters, rue des Alouettes 12, furieux"
PERSONAL = (PSEUDONYM, PHONE, EMAIL, CUSTOMER_REF, AGENT, CONTACT_ID, EVENT_ID, FREE_TEXT)

TAGS = [bytes([n]) * 8 for n in range(1, 8)]  # seven distinct people
SOURCE = "contact.ores.v1/0"


def _utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def _envelope(service: str = "incoming_call", occurred_at: datetime = T0) -> dict[str, Any]:
    return {
        "event_id": EVENT_ID,
        "contact_id": CONTACT_ID,
        "occurred_at": occurred_at,
        "source_system": "acd",
        "client": "ORES",
        "service": service,
        "purpose": "contact_handling",
        "site": "gosselies",
        "language": "fr",
        "subject": {
            "phone": PHONE,
            "email": EMAIL,
            "social_handle": {"platform": "facebook", "handle": "jan.peeters.42"},
            "customer_ref": CUSTOMER_REF,
        },
    }


def _call(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "call_id": "acd-77",
        "queue": "ores-outage-fr",
        "agent_id": AGENT,
        "answered_at": None,
        "ended_at": None,
        "duration_s": 0,
        "outcome": "answered",
        "ivr_path": "fr>outage>electricity",
        "queued_at": None,
        "wrap_up_s": None,
    }
    return body | fields


def _chat(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "session_id": "chat-9",
        "agent_id": None,
        "started_at": T0,
        "ended_at": None,
        "message_count": 6,
        "handed_to_agent": False,
        "first_response_at": None,
    }
    return body | fields


def _email(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "message_id": "<m-1@example.be>",
        "mailbox": "info@ores.example",
        "subject": FREE_TEXT,
        "body": FREE_TEXT,
        "attachment_count": 0,
        "in_reply_to": None,
        "replied_to_received_at": None,
    }
    return body | fields


def _answer(score: int, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "survey_id": "srv-1",
        "score": score,
        "comment": FREE_TEXT,
        "survey_type": "nps",
        "related_channel": None,
        "csat": None,
    }
    return body | fields


def _governance(**fields: Any) -> dict[str, Any]:
    governance: dict[str, Any] = {
        "controller": "ORES",
        "processor": "COMNEXIO",
        "purpose": "contact_handling",
        "legal_basis": "legitimate_interest",
        "subject_pseudonym": PSEUDONYM,
        "policy_version": "2026-01",
        "restricted": False,
        "retention_class": "contact_6_months",
        "excluded_purposes": [],
    }
    return governance | fields


def _tagged(
    channel: str, kind: str, occurred_at: datetime = T0, **governance: Any
) -> dict[str, Any]:
    return {
        "event_id": EVENT_ID,
        "contact_id": CONTACT_ID,
        "channel": channel,
        "kind": kind,
        "occurred_at": occurred_at,
        "governance": _governance(**governance),
        "key_id": "dk-1",
        "source_fingerprint": "0123456789abcdef",
        "event": b"\xc3\x01encrypted",
        "traceparent": None,
    }


def _raw(
    kind: str,
    branch: str,
    body: dict[str, Any],
    service: str = "incoming_call",
    occurred_at: datetime = T0,
) -> dict[str, Any]:
    """A decoded raw event as fastavro gives it with return_record_name (a (name, dict) pair)."""
    return {
        "envelope": _envelope(service, occurred_at),
        "kind": kind,
        "payload": (f"be.comnexio.contactflow.{branch}", body),
    }


def _entry(**fields: Any) -> dict[str, Any]:
    """One entry of a KpiFact: what one event adds."""
    entry: dict[str, Any] = {
        "source": "contact.ores.v1/2",
        "source_offset": 41,
        "routed_at": T0 + timedelta(minutes=1),
        "occurred_at": T0,
        "subject_tag": TAGS[0],
        "measures": {"offered": 1, "answered": 1},
    }
    return entry | fields


def _fact(*entries: dict[str, Any], grain: str = DAY, group: Group = OUTAGE) -> dict[str, Any]:
    """A KpiFact of `group` and `grain` carrying `entries` (one default entry when none)."""
    return {
        "channel": group.channel,
        "site": group.site,
        "language": group.language,
        "queue": group.queue,
        "grain": grain,
        "entries": list(entries) if entries else [_entry()],
    }


def _schema_fields(name: str) -> set[str]:
    return {f["name"] for f in json.loads((AVRO / name).read_text())["fields"]}


@pytest.fixture(scope="module")
def catalog() -> SchemaCatalog:
    return SchemaCatalog.load()


@pytest.fixture(scope="module")
def serde(catalog: SchemaCatalog) -> AvroSerde:
    return AvroSerde(catalog)


def _fact_fields(catalog: SchemaCatalog) -> tuple[set[str], set[str]]:
    """The field names of the latest KpiFact contract and of its entries' record."""
    fields = catalog.latest("KpiFact").definition["fields"]
    (entries,) = [f for f in fields if f["name"] == "entries"]
    return {f["name"] for f in fields}, {f["name"] for f in entries["type"]["items"]["fields"]}


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"service_level_s": 0}, "service-level"),
        ({"min_subjects": 1}, "anonymity threshold"),
        ({"grace": timedelta(seconds=-1)}, "grace"),
        ({"keep_cells": timedelta(seconds=-1)}, "kept after their grace"),
    ],
)
def test_config_refuses_nonsense(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KpiConfig(**fields)


def test_config_defaults_are_those_of_the_issue() -> None:
    assert (CONFIG.service_level_s, CONFIG.min_subjects, CONFIG.grace) == (20, 5, GRACE)
    assert CONFIG.keep_cells == timedelta(days=14)


def test_a_window_is_let_go_of_keep_cells_after_its_grace_period() -> None:
    let_go = HOUR_T0.end + GRACE + timedelta(days=14)
    assert not CONFIG.forgotten(HOUR_T0, let_go - timedelta(milliseconds=1))
    assert CONFIG.forgotten(HOUR_T0, let_go)
    assert not CONFIG.forgotten(DAY_T0, let_go)  # the day ends later


def test_cells_to_forget_names_the_cells_of_windows_let_go_of_only() -> None:
    config = KpiConfig(keep_cells=timedelta(days=1))
    now = HOUR_T0.end + GRACE + timedelta(days=1)
    keys = [OUTAGE_DAY_KEY, OUTAGE_HOUR_KEY]
    assert cells_to_forget(keys, now, config) == [OUTAGE_HOUR_KEY]
    assert cells_to_forget(keys, now - timedelta(seconds=1), config) == []
    # a key that names no window (not the app's) is left alone, not an error
    assert cells_to_forget(["not a cell", "hour|yesterday|a|b|c|d", *keys], now, config) == [
        OUTAGE_HOUR_KEY
    ]


# ---------------------------------------------------------------------------- windows


def test_winter_instant_falls_in_its_cet_hour_and_day() -> None:
    assert windows_of(T0, DAY) == (HOUR_T0, DAY_T0)
    hour, day = windows_of(T0, DAY)
    assert hour.start.utcoffset() == timedelta(0)
    assert day.start.utcoffset() == timedelta(0)
    assert day.end - day.start == timedelta(hours=24)


def test_summer_instant_falls_in_its_cest_hour_and_day() -> None:
    hour, day = windows_of(_utc(2026, 7, 15, 9, 30), DAY)
    assert hour == Window(
        HOUR, _utc(2026, 7, 15, 9, 0), _utc(2026, 7, 15, 10, 0), "2026-07-15 11:00 +02:00"
    )
    assert day == Window(DAY, _utc(2026, 7, 14, 22, 0), _utc(2026, 7, 15, 22, 0), "2026-07-15")


def test_the_day_is_the_brussels_day_not_the_utc_day() -> None:
    # 23:30 UTC on the 15th is 00:30 on the 16th in Brussels
    hour, day = windows_of(_utc(2026, 1, 15, 23, 30), DAY)
    assert hour.label == "2026-01-16 00:00 +01:00"
    assert day == Window(DAY, _utc(2026, 1, 15, 23, 0), _utc(2026, 1, 16, 23, 0), "2026-01-16")
    # and 21:59 UTC on a summer day is still that day (23:59 CEST)
    assert windows_of(_utc(2026, 7, 15, 21, 59), DAY)[1].label == "2026-07-15"
    assert windows_of(_utc(2026, 7, 15, 22, 0), DAY)[1].label == "2026-07-16"


def test_autumn_clock_change_day_lasts_25_hours_with_two_distinct_two_oclocks() -> None:
    # 2026-10-25, last Sunday of October: at 01:00 UTC 03:00 CEST becomes 02:00 CET
    first_hour, first_day = windows_of(_utc(2026, 10, 25, 0, 30), DAY)
    second_hour, second_day = windows_of(_utc(2026, 10, 25, 1, 30), DAY)
    assert first_hour == Window(
        HOUR, _utc(2026, 10, 25, 0, 0), _utc(2026, 10, 25, 1, 0), "2026-10-25 02:00 +02:00"
    )
    assert second_hour == Window(
        HOUR, _utc(2026, 10, 25, 1, 0), _utc(2026, 10, 25, 2, 0), "2026-10-25 02:00 +01:00"
    )
    assert first_hour.label != second_hour.label
    assert cell_key(first_hour, OUTAGE) != cell_key(second_hour, OUTAGE)
    day = Window(DAY, _utc(2026, 10, 24, 22, 0), _utc(2026, 10, 25, 23, 0), "2026-10-25")
    assert first_day == second_day == day
    assert day.end - day.start == timedelta(hours=25)
    labels = {windows_of(day.start + timedelta(hours=h), DAY)[0].label for h in range(25)}
    assert len(labels) == 25
    assert {label for label in labels if " 02:00 " in label} == {
        "2026-10-25 02:00 +02:00",
        "2026-10-25 02:00 +01:00",
    }
    assert all(windows_of(day.start + timedelta(hours=h), DAY)[1] == day for h in range(25))
    assert windows_of(day.end, DAY)[1].label == "2026-10-26"


def test_spring_clock_change_day_lasts_23_hours_and_has_no_two_oclock() -> None:
    # 2026-03-29, last Sunday of March: at 01:00 UTC 02:00 CET becomes 03:00 CEST
    before, day = windows_of(_utc(2026, 3, 29, 0, 30), DAY)
    after, same_day = windows_of(_utc(2026, 3, 29, 1, 30), DAY)
    assert before == Window(
        HOUR, _utc(2026, 3, 29, 0, 0), _utc(2026, 3, 29, 1, 0), "2026-03-29 01:00 +01:00"
    )
    assert after == Window(
        HOUR, _utc(2026, 3, 29, 1, 0), _utc(2026, 3, 29, 2, 0), "2026-03-29 03:00 +02:00"
    )
    assert (
        day
        == same_day
        == Window(DAY, _utc(2026, 3, 28, 23, 0), _utc(2026, 3, 29, 22, 0), "2026-03-29")
    )
    assert day.end - day.start == timedelta(hours=23)
    labels = [windows_of(day.start + timedelta(hours=h), DAY)[0].label for h in range(23)]
    assert len(set(labels)) == 23
    assert not [label for label in labels if " 02:00 " in label]


def test_windows_are_the_same_for_every_instant_of_a_utc_hour() -> None:
    kpi._windows_of_hour.cache_clear()  # a fresh memo, whatever ran before
    # 09:00-10:00 UTC on 2026-01-15 is 10:00-11:00 CET, however the instant is written
    same_hour = [
        _utc(2026, 1, 15, 9, 0),
        T0,
        _utc(2026, 1, 15, 9, 59, 59) + timedelta(microseconds=999_999),
        datetime(2026, 1, 15, 10, 45, tzinfo=BRUSSELS),  # 09:45 UTC
        datetime(2026, 1, 15, 15, 10, tzinfo=timezone(timedelta(hours=5, minutes=30))),  # 09:40
    ]
    for instant in same_hour:
        assert windows_of(instant, DAY) == (HOUR_T0, DAY_T0)
        assert windows_of(instant, DAY) is windows_of(T0, DAY)  # memoised, not rebuilt
        assert windows_of(instant, WEEK) == (WEEK_T0,)
    # the instants either side of that hour are in the hours either side
    before = windows_of(_utc(2026, 1, 15, 8, 59, 59) + timedelta(microseconds=999_999), DAY)
    after = windows_of(_utc(2026, 1, 15, 10, 0), DAY)
    assert (before[0].label, after[0].label) == (
        "2026-01-15 09:00 +01:00",
        "2026-01-15 11:00 +01:00",
    )
    assert before[1] == after[1] == DAY_T0


def test_the_memo_keeps_the_two_autumn_two_oclocks_apart() -> None:
    kpi._windows_of_hour.cache_clear()
    # 2026-10-25: 00:00-01:00 UTC is 02:00-03:00 CEST, 01:00-02:00 UTC is 02:00-03:00 CET.
    # Ask for the second 02:30 first, by its local time (fold=1), then for the first.
    second = windows_of(datetime(2026, 10, 25, 2, 30, tzinfo=BRUSSELS, fold=1), DAY)
    first = windows_of(datetime(2026, 10, 25, 2, 30, tzinfo=BRUSSELS), DAY)
    first_hour = Window(
        HOUR, _utc(2026, 10, 25, 0, 0), _utc(2026, 10, 25, 1, 0), "2026-10-25 02:00 +02:00"
    )
    second_hour = Window(
        HOUR, _utc(2026, 10, 25, 1, 0), _utc(2026, 10, 25, 2, 0), "2026-10-25 02:00 +01:00"
    )
    day = Window(DAY, _utc(2026, 10, 24, 22, 0), _utc(2026, 10, 25, 23, 0), "2026-10-25")
    assert first == (first_hour, day)
    assert second == (second_hour, day)
    # every instant of each UTC hour gets that hour's windows back
    assert windows_of(_utc(2026, 10, 25, 0, 0), DAY) == (first_hour, day)
    assert windows_of(_utc(2026, 10, 25, 0, 59, 59), DAY) == (first_hour, day)
    assert windows_of(_utc(2026, 10, 25, 1, 0), DAY) == (second_hour, day)
    assert windows_of(_utc(2026, 10, 25, 1, 59, 59), DAY) == (second_hour, day)
    assert cell_key(first_hour, OUTAGE) != cell_key(second_hour, OUTAGE)


def test_iso_week_across_the_year_boundary() -> None:
    # 2026 starts on a Thursday, so it has 53 ISO weeks; W53 runs Mon 28 Dec to Sun 3 Jan
    assert date(2026, 12, 31).isocalendar() == (2026, 53, 4)
    w53 = Window(WEEK, _utc(2026, 12, 27, 23, 0), _utc(2027, 1, 3, 23, 0), "2026-W53")
    assert windows_of(_utc(2026, 12, 31, 12, 0), WEEK) == (w53,)
    assert windows_of(_utc(2027, 1, 3, 12, 0), WEEK) == (w53,)  # Sunday, calendar year 2027
    # 23:30 UTC on Sunday 3 Jan is 00:30 on Monday 4 Jan in Brussels: the next ISO week
    assert windows_of(_utc(2027, 1, 3, 23, 30), WEEK)[0].label == "2027-W01"
    # Monday 29 Dec 2025 already belongs to ISO year 2026
    assert date(2025, 12, 29).isocalendar() == (2026, 1, 1)
    assert windows_of(_utc(2025, 12, 29, 10, 0), WEEK)[0].label == "2026-W01"


def test_week_fact_windows_and_a_week_with_a_clock_change() -> None:
    assert windows_of(T0, WEEK) == (WEEK_T0,)
    # Mon 19 Oct 00:00 CEST to Mon 26 Oct 00:00 CET: 7 days and one hour
    week = windows_of(_utc(2026, 10, 22, 12, 0), WEEK)[0]
    assert week == Window(WEEK, _utc(2026, 10, 18, 22, 0), _utc(2026, 10, 25, 23, 0), "2026-W43")
    assert week.end - week.start == timedelta(hours=169)


ROUND_TRIP_WINDOWS = [
    HOUR_T0,
    DAY_T0,
    WEEK_T0,
    Window(HOUR, _utc(2026, 10, 25, 0, 0), _utc(2026, 10, 25, 1, 0), "2026-10-25 02:00 +02:00"),
    Window(HOUR, _utc(2026, 10, 25, 1, 0), _utc(2026, 10, 25, 2, 0), "2026-10-25 02:00 +01:00"),
    Window(DAY, _utc(2026, 10, 24, 22, 0), _utc(2026, 10, 25, 23, 0), "2026-10-25"),
    Window(HOUR, _utc(2026, 3, 29, 1, 0), _utc(2026, 3, 29, 2, 0), "2026-03-29 03:00 +02:00"),
    Window(DAY, _utc(2026, 3, 28, 23, 0), _utc(2026, 3, 29, 22, 0), "2026-03-29"),
    Window(HOUR, _utc(2026, 7, 15, 9, 0), _utc(2026, 7, 15, 10, 0), "2026-07-15 11:00 +02:00"),
    Window(WEEK, _utc(2026, 12, 27, 23, 0), _utc(2027, 1, 3, 23, 0), "2026-W53"),
    Window(WEEK, _utc(2027, 1, 3, 23, 0), _utc(2027, 1, 10, 23, 0), "2027-W01"),
]


@pytest.mark.parametrize("window", ROUND_TRIP_WINDOWS, ids=lambda w: f"{w.grain}:{w.label}")
def test_window_of_label_gives_back_the_window(window: Window) -> None:
    assert window_of_label(window.grain, window.label) == window


@pytest.mark.parametrize("window", ROUND_TRIP_WINDOWS, ids=lambda w: f"{w.grain}:{w.label}")
@pytest.mark.parametrize(
    "group",
    [OUTAGE, Group("survey", None, None, "satisfaction_survey"), Group("chat", None, None, None)],
    ids=["full", "partial", "bare"],
)
def test_cell_key_round_trips(window: Window, group: Group) -> None:
    assert parse_cell_key(cell_key(window, group)) == (window, group)


def test_cell_keys_read_as_documented() -> None:
    assert cell_key(HOUR_T0, OUTAGE) == OUTAGE_HOUR_KEY
    assert cell_key(DAY_T0, Group("survey", None, "nl", "satisfaction_survey")) == (
        "day|2026-01-15|survey||nl|satisfaction_survey"
    )
    assert parse_cell_key("week|2026-W53|email|eupen||info@ores.example") == (
        Window(WEEK, _utc(2026, 12, 27, 23, 0), _utc(2027, 1, 3, 23, 0), "2026-W53"),
        Group("email", "eupen", None, "info@ores.example"),
    )


def test_lateness_is_window_end_plus_grace_inclusive() -> None:
    # HOUR_T0 ends at 10:00 UTC; with 6 h of grace an event routed at 16:00 UTC is late
    assert not is_late(HOUR_T0, _utc(2026, 1, 15, 15, 59, 59), GRACE)
    assert not is_late(HOUR_T0, _utc(2026, 1, 15, 16, 0) - timedelta(milliseconds=1), GRACE)
    assert is_late(HOUR_T0, _utc(2026, 1, 15, 16, 0), GRACE)
    assert is_late(HOUR_T0, _utc(2026, 1, 15, 10, 0), timedelta(0))
    assert not is_late(DAY_T0, _utc(2026, 1, 16, 4, 59), GRACE)
    assert is_late(DAY_T0, _utc(2026, 1, 16, 5, 0), GRACE)


def test_routed_time_reads_a_kafka_timestamp() -> None:
    assert routed_time(0) == _utc(1970, 1, 1)
    # 2026-01-15 09:30 UTC: 20468 days (56 years, 14 of them leap, plus 14 days) and 9.5 h
    assert routed_time(1_768_469_400_000) == T0
    assert routed_time(1_768_469_400_001) == T0 + timedelta(milliseconds=1)
    assert routed_time(0).utcoffset() == timedelta(0)


# ---------------------------------------------------------------------------- phone


def test_answered_call_waits_from_queued_at_and_handles_with_wrap_up() -> None:
    # entered the queue 4 s after the event started, answered 19.5 s later
    body = _call(
        queued_at=T0 + timedelta(seconds=4),
        answered_at=T0 + timedelta(seconds=23.5),
        duration_s=240,
        wrap_up_s=45,
    )
    daily, weekly = measures_of("phone", "inbound_call", _envelope(), body, CONFIG)
    assert daily == {
        "offered": 1,
        "answered": 1,
        "answered_in_sl": 1,  # 19.5 s from the queue, not 23.5 s from occurred_at
        "answer_wait_ms": 19_500,
        "handle_ms": 285_000,  # (240 + 45) s
    }
    assert weekly == {}


@pytest.mark.parametrize("v2_payload", [False, True], ids=["queued_at-null", "no-queued_at"])
def test_answered_call_without_queued_at_waits_from_occurred_at(v2_payload: bool) -> None:
    body = _call(answered_at=T0 + timedelta(seconds=25), duration_s=180)
    if v2_payload:
        del body["queued_at"], body["wrap_up_s"]
    daily, _ = measures_of("phone", "inbound_call", _envelope(), body, CONFIG)
    assert daily == {
        "offered": 1,
        "answered": 1,
        "answered_in_sl": 0,  # 25 s > 20 s
        "answer_wait_ms": 25_000,
        "handle_ms": 180_000,  # no wrap-up known
    }


@pytest.mark.parametrize(
    ("wait", "in_sl", "wait_ms"),
    [
        (timedelta(seconds=19, milliseconds=999), 1, 19_999),
        (timedelta(seconds=20), 1, 20_000),  # exactly the threshold is within it
        (timedelta(seconds=20, milliseconds=1), 0, 20_001),
        (timedelta(minutes=3), 0, 180_000),
    ],
)
def test_service_level_threshold(wait: timedelta, in_sl: int, wait_ms: int) -> None:
    body = _call(queued_at=T0, answered_at=T0 + wait, duration_s=60)
    daily, _ = measures_of("phone", "inbound_call", _envelope(), body, CONFIG)
    assert (daily["answered_in_sl"], daily["answer_wait_ms"]) == (in_sl, wait_ms)


@pytest.mark.parametrize("wait_ms", [1_001, 1_003, 2_002, 2_006])
def test_durations_are_exact_to_the_millisecond(wait_ms: int) -> None:
    # timestamp-millis times: a wait of 1001 ms is 1001 ms, not 1000 (no float truncation)
    config = KpiConfig(service_level_s=1)
    body = _call(queued_at=T0, answered_at=T0 + timedelta(milliseconds=wait_ms), duration_s=1)
    daily, _ = measures_of("phone", "inbound_call", _envelope(), body, config)
    assert daily["answer_wait_ms"] == wait_ms
    assert daily["answered_in_sl"] == int(wait_ms <= 1_000) == 0
    chat = _chat(first_response_at=T0 + timedelta(milliseconds=wait_ms))
    assert (
        measures_of("chat", "chat_session", _envelope(), chat, CONFIG)[0]["first_response_ms"]
        == wait_ms
    )


def test_answered_before_queued_clock_skew_waits_zero() -> None:
    body = _call(
        queued_at=T0 + timedelta(seconds=10), answered_at=T0 + timedelta(seconds=5), duration_s=9
    )
    daily, _ = measures_of("phone", "inbound_call", _envelope(), body, CONFIG)
    assert (daily["answer_wait_ms"], daily["answered_in_sl"], daily["handle_ms"]) == (0, 1, 9000)


@pytest.mark.parametrize(
    "body",
    [
        _call(outcome="abandoned", duration_s=35),
        _call(outcome="no_answer", duration_s=35),  # never answered
        _call(outcome="abandoned", answered_at=T0 + timedelta(seconds=3), duration_s=4),
    ],
)
def test_abandoned_call_is_offered_and_abandoned_only(body: dict[str, Any]) -> None:
    assert measures_of("phone", "inbound_call", _envelope(), body, CONFIG) == (
        {"offered": 1, "abandoned": 1},
        {},
    )


@pytest.mark.parametrize(
    ("kind", "body", "daily"),
    [
        (
            "callback_requested",
            {"callback_id": "cb-1", "requested_for": T0, "callback_number": PHONE},
            {"callbacks_requested": 1},
        ),
        (
            "outbound_call",
            {"call_id": "o-1", "agent_id": AGENT, "reason": "callback", "duration_s": 90},
            {"callbacks_done": 1},
        ),
        (
            "outbound_call",
            {
                "call_id": "o-2",
                "agent_id": AGENT,
                "reason": "intervention_followup",
                "duration_s": 1,
            },
            {"outbound_calls": 1},
        ),
        ("click_to_call", {"request_id": "c-1", "page": "/panne"}, {"click_to_call": 1}),
        (
            "recording_available",
            {"recording_id": "r-1", "call_id": "acd-77", "media_ref": "s3://r", "agent_id": AGENT},
            {},
        ),
    ],
)
def test_other_phone_kinds(kind: str, body: dict[str, Any], daily: dict[str, int]) -> None:
    assert measures_of("phone", kind, _envelope("callback"), body, CONFIG) == (daily, {})


# ---------------------------------------------------------------------------- chat


def test_agent_chat_counts_a_conversation_and_its_first_response() -> None:
    body = _chat(agent_id=AGENT, first_response_at=T0 + timedelta(seconds=12))
    assert measures_of("chat", "chat_session", _envelope("customer_contact"), body, CONFIG) == (
        {"conversations": 1, "first_responses": 1, "first_response_ms": 12_000},
        {},
    )


def test_chatbot_session_handled_by_the_bot_alone() -> None:
    body = _chat(first_response_at=T0 + timedelta(seconds=2))
    daily, _ = measures_of("chat", "chatbot_session", _envelope("chatbot"), body, CONFIG)
    assert daily == {
        "conversations": 1,
        "bot_sessions": 1,
        "bot_only": 1,
        "first_responses": 1,
        "first_response_ms": 2_000,
    }


def test_chatbot_session_handed_to_an_agent_without_a_known_first_response() -> None:
    body = _chat(agent_id=AGENT, handed_to_agent=True)
    daily, _ = measures_of("chat", "chatbot_session", _envelope("chatbot"), body, CONFIG)
    assert daily == {"conversations": 1, "bot_sessions": 1, "handed_to_agent": 1}


def test_chat_transcript_adds_nothing() -> None:
    body = {"transcript_id": "t-1", "session_id": "chat-9", "messages": [{"text": FREE_TEXT}]}
    assert measures_of("chat", "transcript_available", _envelope(), body, CONFIG) == ({}, {})


# ---------------------------------------------------------------------------- e-mail


def test_email_received_and_answered_with_response_time() -> None:
    env = _envelope("customer_contact")
    assert measures_of("email", "email_received", env, _email(), CONFIG) == (
        {"emails_received": 1},
        {},
    )
    reply = _email(in_reply_to="<m-0@example.be>", replied_to_received_at=T0 - timedelta(hours=2))
    assert measures_of("email", "email_sent", env, reply, CONFIG) == (
        {"emails_answered": 1, "email_responses": 1, "email_response_ms": 7_200_000},
        {},
    )


def test_email_sent_without_a_received_time_or_not_a_reply() -> None:
    env = _envelope("customer_contact")
    reply = _email(in_reply_to="<m-0@example.be>")
    assert measures_of("email", "email_sent", env, reply, CONFIG)[0] == {"emails_answered": 1}
    assert measures_of("email", "email_sent", env, _email(), CONFIG)[0] == {"emails_sent": 1}


# ---------------------------------------------------------------------------- social


def test_social_comment_moderation_and_reply_response_time() -> None:
    env = _envelope("social_moderation")
    comment = {"comment_id": "fb-1", "platform": "facebook", "post_ref": "p-1", "text": FREE_TEXT}
    assert measures_of("social", "comment_received", env, comment, CONFIG)[0] == {"comments": 1}
    moderated = {"comment_id": "fb-1", "action": "hidden", "reason": "insult"}
    assert measures_of("social", "moderated", env, moderated, CONFIG)[0] == {"moderated": 1}
    reply = {
        "comment_id": "fb-1",
        "reply_id": "fb-2",
        "text": FREE_TEXT,
        "agent_id": AGENT,
        "comment_received_at": T0 - timedelta(minutes=15),
    }
    assert measures_of("social", "reply_sent", env, reply, CONFIG)[0] == {
        "replies": 1,
        "social_responses": 1,
        "social_response_ms": 900_000,
    }
    reply["comment_received_at"] = None
    assert measures_of("social", "reply_sent", env, reply, CONFIG)[0] == {"replies": 1}


# ---------------------------------------------------------------------------- surveys


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (0, "detractors"),
        (6, "detractors"),
        (7, "passives"),
        (8, "passives"),
        (9, "promoters"),
        (10, "promoters"),
    ],
)
def test_survey_nps_bands(score: int, band: str) -> None:
    env = _envelope("satisfaction_survey")
    assert measures_of("survey", "survey_answered", env, _answer(score), CONFIG) == (
        {"responses": 1, band: 1},
        {},
    )


def test_survey_csat_and_invitation() -> None:
    env = _envelope("satisfaction_survey")
    assert measures_of("survey", "survey_answered", env, _answer(8, csat=4), CONFIG)[0] == {
        "responses": 1,
        "passives": 1,
        "csat_answers": 1,
        "csat_sum": 4,
    }
    sent = {"survey_id": "srv-1", "survey_type": "sms", "related_contact_id": CONTACT_ID}
    assert measures_of("survey", "survey_sent", env, sent, CONFIG) == ({"surveys_sent": 1}, {})


def test_groups_by_queue_mailbox_or_service_and_survey_under_its_related_channel() -> None:
    env = _envelope("satisfaction_survey")
    assert group_of("survey", env, _answer(9, related_channel="phone")) == Group(
        "phone", "gosselies", "fr", "satisfaction_survey"
    )
    assert group_of("survey", env, _answer(9)) == Group(
        "survey", "gosselies", "fr", "satisfaction_survey"
    )
    assert group_of("phone", _envelope(), _call()) == OUTAGE
    assert group_of("email", env, _email()) == Group(
        "email", "gosselies", "fr", "info@ores.example"
    )
    assert group_of("chat", _envelope("chatbot"), _chat()) == Group(
        "chat", "gosselies", "fr", "chatbot"
    )
    bare = _envelope("chatbot") | {"site": None, "language": None}
    assert group_of("chat", bare, _chat()) == Group("chat", None, None, "chatbot")


# ---------------------------------------------------------------------------- complaints


@pytest.mark.parametrize(
    ("channel", "kind", "body"),
    [
        ("phone", "inbound_call", _call(outcome="abandoned")),
        ("phone", "callback_requested", {"callback_id": "cb-1", "requested_for": T0}),
        ("phone", "click_to_call", {"request_id": "c-1", "page": "/plainte"}),
        ("chat", "chat_session", _chat()),
        ("chat", "chatbot_session", _chat()),
        ("email", "email_received", _email()),
        ("social", "comment_received", {"comment_id": "fb-1", "text": FREE_TEXT}),
    ],
)
def test_a_complaint_counts_once_per_week_on_its_opening_event(
    channel: str, kind: str, body: dict[str, Any]
) -> None:
    daily, weekly = measures_of(channel, kind, _envelope("complaint"), body, CONFIG)
    assert weekly == {"complaints": 1}
    assert daily  # the contact is still counted in its day
    assert measures_of(channel, kind, _envelope("customer_contact"), body, CONFIG)[1] == {}


@pytest.mark.parametrize(
    ("channel", "kind", "body"),
    [
        ("phone", "outbound_call", {"reason": "callback"}),
        ("email", "email_sent", _email(in_reply_to="<m-0@example.be>")),
        ("social", "reply_sent", {"comment_received_at": None}),
        ("social", "moderated", {}),
        ("survey", "survey_answered", _answer(2)),
    ],
)
def test_follow_up_events_of_a_complaint_add_no_complaint(
    channel: str, kind: str, body: dict[str, Any]
) -> None:
    assert measures_of(channel, kind, _envelope("complaint"), body, CONFIG)[1] == {}


# ---------------------------------------------------------------------------- governance


@pytest.mark.parametrize(
    ("governance", "counts"),
    [
        (_governance(), True),
        (_governance(excluded_purposes=["marketing"]), True),
        (_governance(excluded_purposes=None), True),
        ({k: v for k, v in _governance().items() if k != "excluded_purposes"}, True),  # v1
        (_governance(purpose="coaching"), False),
        (_governance(restricted=True), False),
        (_governance(excluded_purposes=["reporting"]), False),
        (_governance(excluded_purposes=["marketing", "reporting"]), False),
    ],
    ids=[
        "plain",
        "other-objection",
        "null",
        "v1-tagged",
        "coaching",
        "restricted",
        "objected",
        "objected-among-others",
    ],
)
def test_counts_for_reporting(governance: dict[str, Any], counts: bool) -> None:
    assert counts_for_reporting(governance) is counts


# ---------------------------------------------------------------------------- cells


def test_four_people_stay_suppressed_whatever_the_number_of_events() -> None:
    cell = Cell()
    for offset in range(10):
        assert cell.apply(SOURCE, offset, TAGS[offset % 4], {"offered": 1}, K)
    assert cell == Cell(
        measures={"offered": 10},
        tags=TAGS[:4],
        anonymous=False,
        applied={SOURCE: 9},
        revision=10,
        late=0,
    )
    figure = figure_of(HOUR_T0, OUTAGE, cell, K, final=False, now=NOW)
    assert figure["suppressed"] is True
    assert figure["measures"] == {}


def test_the_fifth_person_makes_the_cell_anonymous_and_forgets_the_tags() -> None:
    cell = Cell()
    for offset, tag in enumerate(TAGS[:4]):
        cell.apply(SOURCE, offset, tag, {"answered": 1, "handle_ms": 1000}, K)
    assert not cell.anonymous
    assert cell.apply(SOURCE, 4, TAGS[4], {"answered": 1, "handle_ms": 500}, K)
    assert cell.anonymous is True
    assert cell.tags == []
    assert cell.measures == {"answered": 5, "handle_ms": 4500}
    # a sixth person is not remembered either
    assert cell.apply(SOURCE, 5, TAGS[5], {"answered": 1}, K)
    assert (cell.tags, cell.anonymous, cell.revision) == ([], True, 6)


def test_k_is_a_parameter() -> None:
    cell = Cell()
    cell.apply(SOURCE, 0, TAGS[0], {"comments": 1}, 2)
    assert not cell.anonymous
    cell.apply(SOURCE, 1, TAGS[0], {"comments": 1}, 2)  # same person again
    assert not cell.anonymous
    cell.apply(SOURCE, 2, TAGS[1], {"comments": 1}, 2)
    assert cell.anonymous


def test_a_replayed_offset_changes_nothing() -> None:
    cell = Cell()
    for offset in (3, 4, 7):
        cell.apply(SOURCE, offset, TAGS[offset % 3], {"offered": 1, "answer_wait_ms": 2000}, K)
    before = copy.deepcopy(cell)
    for offset in (7, 4, 0):  # the last one again, and older ones
        assert cell.apply(SOURCE, offset, TAGS[6], {"offered": 1, "answer_wait_ms": 9}, K) is False
        assert cell.skip_late(SOURCE, offset) is False
    assert cell == before
    assert cell.measures == {"offered": 3, "answer_wait_ms": 6000}
    assert cell.revision == 3
    assert TAGS[6] not in cell.tags


def test_offsets_are_remembered_per_source_partition() -> None:
    cell = Cell()
    assert cell.apply("contact.ores.v1/0", 12, TAGS[0], {"comments": 1}, K)
    assert cell.apply("contact.ores.v1/1", 12, TAGS[1], {"comments": 1}, K)
    assert cell.apply("contact.comnexio.v1/0", 3, TAGS[2], {"comments": 1}, K)
    assert not cell.apply("contact.ores.v1/1", 11, TAGS[3], {"comments": 1}, K)
    assert cell.applied == {
        "contact.ores.v1/0": 12,
        "contact.ores.v1/1": 12,
        "contact.comnexio.v1/0": 3,
    }
    assert cell.measures == {"comments": 3}
    assert cell.tags == TAGS[:3]


def test_a_late_event_is_counted_in_late_only_and_once() -> None:
    cell = Cell()
    cell.apply(SOURCE, 0, TAGS[0], {"offered": 1}, K)
    assert cell.skip_late(SOURCE, 1) is True
    assert cell == Cell({"offered": 1}, [TAGS[0]], False, {SOURCE: 1}, revision=1, late=1)
    assert cell.skip_late(SOURCE, 1) is False
    assert cell.apply(SOURCE, 1, TAGS[1], {"offered": 1}, K) is False
    assert cell.late == 1
    assert cell.measures == {"offered": 1}


def test_cell_record_round_trip_and_shape() -> None:
    cell = Cell()
    cell.apply(SOURCE, 5, TAGS[0], {"offered": 2, "abandoned": 1}, K)
    cell.apply("contact.comnexio.v1/4", 9, TAGS[1], {"offered": 1}, K)
    cell.skip_late(SOURCE, 6)
    record = cell.to_record()
    assert record == {
        "measures": {"offered": 3, "abandoned": 1},
        "subject_tags": [TAGS[0], TAGS[1]],
        "anonymous": False,
        "applied": {SOURCE: 6, "contact.comnexio.v1/4": 9},
        "revision": 2,
        "late": 1,
    }
    assert set(record) == _schema_fields("KpiCell.v1.avsc")
    restored = Cell.from_record(copy.deepcopy(record))
    assert restored == cell
    # the restored cell owns its state: applying to it leaves the original alone
    restored.apply(SOURCE, 7, TAGS[2], {"offered": 1}, K)
    assert cell.measures == {"offered": 3, "abandoned": 1}
    anonymous = Cell({"offered": 9}, [], True, {SOURCE: 40}, 9, 0)
    assert Cell.from_record(anonymous.to_record()) == anonymous


# ---------------------------------------------------------------------------- apply_fact


def test_a_day_fact_updates_its_hour_and_its_day() -> None:
    cells: dict[str, Cell] = {}
    touched = apply_fact(cells, _fact(), K, GRACE)
    assert touched == [(OUTAGE_HOUR_KEY, HOUR_T0, OUTAGE), (OUTAGE_DAY_KEY, DAY_T0, OUTAGE)]
    expected = Cell(
        {"offered": 1, "answered": 1}, [TAGS[0]], False, {"contact.ores.v1/2": 41}, 1, 0
    )
    assert cells == {OUTAGE_HOUR_KEY: expected, OUTAGE_DAY_KEY: expected}


def test_an_entry_for_a_window_let_go_of_makes_no_cell_there() -> None:
    # routed within its hour's grace, but taken in after the app let go of the hour: a
    # fresh cell would publish a figure of this one entry over the final one
    config = KpiConfig(keep_cells=timedelta(days=1))
    now = HOUR_T0.end + GRACE + timedelta(days=1)
    in_grace = _fact(_entry(routed_at=HOUR_T0.end + timedelta(minutes=5)))
    cells: dict[str, Cell] = {}
    touched = apply_fact(cells, in_grace, K, GRACE, partial(config.forgotten, now=now))
    assert [key for key, _, _ in touched] == [OUTAGE_DAY_KEY]
    assert list(cells) == [OUTAGE_DAY_KEY]
    assert cells[OUTAGE_DAY_KEY].measures == {"offered": 1, "answered": 1}
    kept: dict[str, Cell] = {}
    apply_fact(kept, in_grace, K, GRACE)  # nothing let go of: the hour takes it
    assert kept[OUTAGE_HOUR_KEY].measures == {"offered": 1, "answered": 1}


def test_a_week_fact_updates_its_week() -> None:
    cells: dict[str, Cell] = {}
    fact = _fact(_entry(measures={"complaints": 1}), grain=WEEK)
    touched = apply_fact(cells, fact, K, GRACE)
    assert touched == [(OUTAGE_WEEK_KEY, WEEK_T0, OUTAGE)]
    assert list(cells) == [OUTAGE_WEEK_KEY]
    assert cells[OUTAGE_WEEK_KEY].measures == {"complaints": 1}


def test_facts_accumulate_and_a_replayed_fact_is_touched_but_changes_nothing() -> None:
    cells: dict[str, Cell] = {}
    for offset, tag in enumerate(TAGS[:5]):
        apply_fact(cells, _fact(_entry(source_offset=offset, subject_tag=tag)), K, GRACE)
    # a second hour of the same day
    next_hour_entry = _entry(source_offset=5, occurred_at=T0 + timedelta(hours=1))
    apply_fact(cells, _fact(next_hour_entry), K, GRACE)
    before = copy.deepcopy(cells)
    touched = apply_fact(cells, _fact(_entry(source_offset=3, subject_tag=TAGS[3])), K, GRACE)
    assert [key for key, _, _ in touched] == [OUTAGE_HOUR_KEY, OUTAGE_DAY_KEY]
    assert cells == before
    assert cells[OUTAGE_HOUR_KEY].measures == {"offered": 5, "answered": 5}
    assert cells[OUTAGE_HOUR_KEY].anonymous
    assert cells[OUTAGE_DAY_KEY].measures == {"offered": 6, "answered": 6}
    assert cells[OUTAGE_DAY_KEY].revision == 6
    next_hour = "hour|2026-01-15 11:00 +01:00|phone|gosselies|fr|ores-outage-fr"
    assert cells[next_hour] == Cell(
        {"offered": 1, "answered": 1}, [TAGS[0]], False, {"contact.ores.v1/2": 5}, 1, 0
    )


def test_a_fact_late_for_its_hour_still_counts_in_its_open_day() -> None:
    # hour 09:00-10:00 UTC closes for good at 16:00 UTC; the day at 05:00 UTC on the 16th
    cells: dict[str, Cell] = {}
    touched = apply_fact(cells, _fact(_entry(routed_at=_utc(2026, 1, 15, 16, 0))), K, GRACE)
    assert [key for key, _, _ in touched] == [OUTAGE_HOUR_KEY, OUTAGE_DAY_KEY]
    assert cells[OUTAGE_HOUR_KEY] == Cell({}, [], False, {"contact.ores.v1/2": 41}, 0, 1)
    assert cells[OUTAGE_DAY_KEY] == Cell(
        {"offered": 1, "answered": 1}, [TAGS[0]], False, {"contact.ores.v1/2": 41}, 1, 0
    )


def test_a_fact_just_inside_the_grace_updates_its_hour() -> None:
    cells: dict[str, Cell] = {}
    routed = _utc(2026, 1, 15, 16, 0) - timedelta(milliseconds=1)
    apply_fact(cells, _fact(_entry(routed_at=routed)), K, GRACE)
    assert cells[OUTAGE_HOUR_KEY].measures == {"offered": 1, "answered": 1}
    assert cells[OUTAGE_HOUR_KEY].late == 0


def test_a_fact_after_its_days_grace_changes_no_measure() -> None:
    cells: dict[str, Cell] = {}
    apply_fact(cells, _fact(_entry(routed_at=_utc(2026, 1, 16, 5, 0))), K, GRACE)
    assert {key: (c.measures, c.late) for key, c in cells.items()} == {
        OUTAGE_HOUR_KEY: ({}, 1),
        OUTAGE_DAY_KEY: ({}, 1),
    }
    cells = {}
    apply_fact(cells, _fact(_entry(routed_at=_utc(2026, 1, 16, 4, 59))), K, GRACE)
    assert cells[OUTAGE_DAY_KEY].measures == {"offered": 1, "answered": 1}
    assert cells[OUTAGE_HOUR_KEY].late == 1


def test_a_late_week_fact_is_judged_against_the_week_end() -> None:
    # W03 ends at 2026-01-18 23:00 UTC; with 6 h of grace it closes at 05:00 UTC on the 19th
    cells: dict[str, Cell] = {}
    week_entry = _entry(measures={"complaints": 1}, routed_at=_utc(2026, 1, 19, 4, 0))
    apply_fact(cells, _fact(week_entry, grain=WEEK), K, GRACE)
    assert cells[OUTAGE_WEEK_KEY].measures == {"complaints": 1}
    later = week_entry | {"source_offset": 42, "routed_at": _utc(2026, 1, 19, 5)}
    apply_fact(cells, _fact(later, grain=WEEK), K, GRACE)
    assert (cells[OUTAGE_WEEK_KEY].measures, cells[OUTAGE_WEEK_KEY].late) == ({"complaints": 1}, 1)


class CountingCells(dict[str, Cell]):
    """A dict of cells that counts, per key, the loads (`get`) and stores (`__setitem__`) that
    would each cost a read or a write of the app's table."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: dict[str, int] = {}
        self.stores: dict[str, int] = {}

    def get(self, key: str, default: Any = None) -> Any:
        self.loads[key] = self.loads.get(key, 0) + 1
        return super().get(key, default)

    def __setitem__(self, key: str, value: Cell) -> None:
        self.stores[key] = self.stores.get(key, 0) + 1
        super().__setitem__(key, value)


NEXT_HOUR = Window(
    HOUR,
    datetime(2026, 1, 15, 10, 0, tzinfo=UTC),
    datetime(2026, 1, 15, 11, 0, tzinfo=UTC),
    "2026-01-15 11:00 +01:00",
)
NEXT_HOUR_KEY = "hour|2026-01-15 11:00 +01:00|phone|gosselies|fr|ores-outage-fr"


def test_a_fact_of_entries_in_two_hours_stores_each_of_its_three_cells_once() -> None:
    # 09:30 and 09:50 UTC are in the 10:00 CET hour, 10:30 UTC in the 11:00 one
    def entry(offset: int, at: datetime, tag: bytes, measures: dict[str, int]) -> dict[str, Any]:
        return _entry(
            source_offset=offset,
            occurred_at=at,
            routed_at=at + timedelta(minutes=1),
            subject_tag=tag,
            measures=measures,
        )

    fact = _fact(
        entry(50, T0, TAGS[0], {"offered": 1, "answered": 1, "answer_wait_ms": 4_000}),
        entry(51, T0 + timedelta(hours=1), TAGS[1], {"offered": 1, "abandoned": 1}),
        entry(52, T0 + timedelta(minutes=20), TAGS[2], {"offered": 1, "answered": 1,
                                                         "answer_wait_ms": 6_000}),
    )  # fmt: skip
    cells = CountingCells()
    touched = apply_fact(cells, fact, K, GRACE)
    assert touched == [
        (OUTAGE_HOUR_KEY, HOUR_T0, OUTAGE),
        (OUTAGE_DAY_KEY, DAY_T0, OUTAGE),
        (NEXT_HOUR_KEY, NEXT_HOUR, OUTAGE),
    ]
    once = {OUTAGE_HOUR_KEY: 1, OUTAGE_DAY_KEY: 1, NEXT_HOUR_KEY: 1}
    assert (cells.loads, cells.stores) == (once, once)
    applied = {"contact.ores.v1/2": 52}
    assert dict(cells) == {
        OUTAGE_HOUR_KEY: Cell(
            {"offered": 2, "answered": 2, "answer_wait_ms": 10_000},
            [TAGS[0], TAGS[2]], False, applied, revision=2, late=0,
        ),
        NEXT_HOUR_KEY: Cell(
            {"offered": 1, "abandoned": 1}, [TAGS[1]], False, {"contact.ores.v1/2": 51},
            revision=1, late=0,
        ),
        OUTAGE_DAY_KEY: Cell(
            {"offered": 3, "answered": 2, "answer_wait_ms": 10_000, "abandoned": 1},
            TAGS[:3], False, applied, revision=3, late=0,
        ),
    }  # fmt: skip
    # the same fact again: each cell loaded once more, none stored, all touched
    before = copy.deepcopy(dict(cells))
    assert apply_fact(cells, fact, K, GRACE) == touched
    assert cells.loads == {key: 2 for key in once}
    assert cells.stores == once
    assert dict(cells) == before


# e1..e6 of one source, offsets 10..15: e1, e2 and e4 in the 10:00 CET hour (09:xx UTC),
# e3, e5 and e6 in the 11:00 one; e(n) adds n seconds of wait and is person n.
REPLAYED = "contact.ores.v1/4"
OTHER = "contact.comnexio.v1/0"
_MINUTES_PAST_NINE = {1: 5, 2: 15, 3: 65, 4: 25, 5: 75, 6: 85}


def _e(n: int) -> dict[str, Any]:
    at = _utc(2026, 1, 15, 9, 0) + timedelta(minutes=_MINUTES_PAST_NINE[n])
    return _entry(
        source=REPLAYED,
        source_offset=9 + n,
        occurred_at=at,
        routed_at=at + timedelta(seconds=30),
        subject_tag=TAGS[n - 1],
        measures={"offered": 1, "answer_wait_ms": n * 1_000},
    )


ONE_PASS = {
    OUTAGE_HOUR_KEY: Cell(
        {"offered": 3, "answer_wait_ms": 7_000},  # e1 + e2 + e4
        [TAGS[0], TAGS[1], TAGS[3]], False, {REPLAYED: 13}, revision=3, late=0,
    ),
    OUTAGE_DAY_KEY: Cell(
        {"offered": 6, "answer_wait_ms": 21_000},  # 1 + 2 + ... + 6 s
        [], True, {REPLAYED: 15}, revision=6, late=0,  # five people seen: anonymous
    ),
    NEXT_HOUR_KEY: Cell(
        {"offered": 3, "answer_wait_ms": 14_000},  # e3 + e5 + e6
        [TAGS[2], TAGS[4], TAGS[5]], False, {REPLAYED: 15}, revision=3, late=0,
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    "applied_before_the_crash",
    [[[1, 2, 3], [4, 5, 6]], [[1, 2, 3]]],
    ids=["both-facts-applied", "second-fact-lost"],
)
def test_a_replay_batched_differently_counts_each_event_once(
    applied_before_the_crash: list[list[int]],
) -> None:
    cells = CountingCells()
    for batch in applied_before_the_crash:
        apply_fact(cells, _fact(*[_e(n) for n in batch]), K, GRACE)
    # the commit stopped at e3's offset: the replay reads e3..e6 as one batch
    apply_fact(cells, _fact(*[_e(n) for n in (3, 4, 5, 6)]), K, GRACE)
    assert dict(cells) == ONE_PASS
    # each cell stored once per fact that changed it: twice in all, whichever was lost
    assert cells.stores == {OUTAGE_HOUR_KEY: 2, OUTAGE_DAY_KEY: 2, NEXT_HOUR_KEY: 2}
    # a later batch mixes another source, whose offsets are lower, with replayed e5 and e6
    other = {"offered": 1, "abandoned": 1}
    at_940, at_1040 = _utc(2026, 1, 15, 9, 40), _utc(2026, 1, 15, 10, 40)
    mixed = _fact(
        _entry(source=OTHER, source_offset=3, occurred_at=at_940, routed_at=at_940,
               subject_tag=TAGS[6], measures=other),
        _e(5),
        _entry(source=OTHER, source_offset=4, occurred_at=at_1040, routed_at=at_1040,
               subject_tag=TAGS[6], measures=other),
        _e(6),
    )  # fmt: skip
    apply_fact(cells, mixed, K, GRACE)
    assert dict(cells) == {
        OUTAGE_HOUR_KEY: Cell(
            {"offered": 4, "answer_wait_ms": 7_000, "abandoned": 1},
            [TAGS[0], TAGS[1], TAGS[3], TAGS[6]], False, {REPLAYED: 13, OTHER: 3},
            revision=4, late=0,
        ),
        OUTAGE_DAY_KEY: Cell(
            {"offered": 8, "answer_wait_ms": 21_000, "abandoned": 2},
            [], True, {REPLAYED: 15, OTHER: 4}, revision=8, late=0,
        ),
        NEXT_HOUR_KEY: Cell(
            {"offered": 4, "answer_wait_ms": 14_000, "abandoned": 1},
            [TAGS[2], TAGS[4], TAGS[5], TAGS[6]], False, {REPLAYED: 15, OTHER: 4},
            revision=4, late=0,
        ),
    }  # fmt: skip


# ---------------------------------------------------------------------------- figures


def test_a_suppressed_figure_withholds_its_measures() -> None:
    cell = Cell({"offered": 3}, TAGS[:3], False, {SOURCE: 2}, 3, 0)
    figure = figure_of(HOUR_T0, OUTAGE, cell, K, final=False, now=NOW)
    assert figure == {
        "grain": "hour",
        "window_start": _utc(2026, 1, 15, 9, 0),
        "window_end": _utc(2026, 1, 15, 10, 0),
        "label": "2026-01-15 10:00 +01:00",
        "channel": "phone",
        "site": "gosselies",
        "language": "fr",
        "queue": "ores-outage-fr",
        "suppressed": True,
        "min_subjects": 5,
        "measures": {},
        "revision": 3,
        "final": False,
        "updated_at": NOW,
    }
    assert set(figure) == _schema_fields("KpiFigure.v1.avsc")


def test_an_anonymous_figure_carries_a_copy_of_its_measures() -> None:
    cell = Cell({"offered": 7, "answered": 6}, [], True, {SOURCE: 8}, 7, 2)
    figure = figure_of(DAY_T0, OUTAGE, cell, K, final=True, now=NOW)
    assert figure["suppressed"] is False
    assert figure["measures"] == {"offered": 7, "answered": 6}
    assert (figure["label"], figure["final"], figure["revision"]) == ("2026-01-15", True, 7)
    assert (figure["window_start"], figure["window_end"]) == (
        _utc(2026, 1, 14, 23, 0),
        _utc(2026, 1, 15, 23, 0),
    )
    figure["measures"]["offered"] = 0
    assert cell.measures["offered"] == 7


# ---------------------------------------------------------------------------- facts_of


def _inbound_body(**fields: Any) -> dict[str, Any]:
    return (
        _call(
            queued_at=T0 + timedelta(seconds=2),
            answered_at=T0 + timedelta(seconds=17),
            duration_s=300,
            wrap_up_s=60,
        )
        | fields
    )


ANSWERED_MEASURES = {
    "offered": 1,
    "answered": 1,
    "answered_in_sl": 1,
    "answer_wait_ms": 15_000,
    "handle_ms": 360_000,
}


@pytest.mark.parametrize("record_name", [True, False], ids=["named-branch", "plain-dict"])
def test_facts_of_an_answered_call_is_one_day_fact(
    record_name: bool, catalog: SchemaCatalog
) -> None:
    raw = _raw("inbound_call", "InboundCall", _inbound_body())
    if not record_name:
        raw["payload"] = raw["payload"][1]
    routed = T0 + timedelta(seconds=30)
    facts = facts_of(
        _tagged("phone", "inbound_call"),
        raw,
        source="contact.ores.v1/3",
        offset=77,
        routed_at=routed,
        config=CONFIG,
    )
    assert len(facts) == 1
    key, fact = facts[0]
    assert key == OUTAGE_DAY_KEY
    tag = fact["entries"][0]["subject_tag"]
    assert isinstance(tag, bytes)
    assert len(tag) == 8
    assert fact == {
        "channel": "phone",
        "site": "gosselies",
        "language": "fr",
        "queue": "ores-outage-fr",
        "grain": "day",
        "entries": [
            {
                "source": "contact.ores.v1/3",
                "source_offset": 77,
                "routed_at": routed,
                "occurred_at": T0,
                "subject_tag": tag,
                "measures": ANSWERED_MEASURES,
            }
        ],
    }
    fact_fields, entry_fields = _fact_fields(catalog)
    assert set(fact) == fact_fields
    assert set(fact["entries"][0]) == entry_fields


def test_facts_of_a_complaint_adds_a_week_fact() -> None:
    body = _inbound_body(queue="ores-complaints-fr")
    facts = facts_of(
        _tagged("phone", "inbound_call"),
        _raw("inbound_call", "InboundCall", body, service="complaint"),
        source="contact.ores.v1/3",
        offset=78,
        routed_at=T0,
        config=CONFIG,
    )
    assert [key for key, _ in facts] == [
        "day|2026-01-15|phone|gosselies|fr|ores-complaints-fr",
        "week|2026-W03|phone|gosselies|fr|ores-complaints-fr",
    ]
    day_fact, week_fact = (fact for _, fact in facts)
    (day_entry,), (week_entry,) = day_fact["entries"], week_fact["entries"]
    assert (day_fact["grain"], day_entry["measures"]) == ("day", ANSWERED_MEASURES)
    assert (week_fact["grain"], week_entry["measures"]) == ("week", {"complaints": 1})
    assert week_entry["subject_tag"] == day_entry["subject_tag"]
    assert week_entry["source_offset"] == day_entry["source_offset"] == 78


def test_facts_of_a_survey_answer_lands_under_the_channel_it_rates() -> None:
    facts = facts_of(
        _tagged("survey", "survey_answered"),
        _raw(
            "survey_answered",
            "SurveyAnswered",
            _answer(10, related_channel="email", csat=5),
            service="satisfaction_survey",
        ),
        source="contact.ores.v1/1",
        offset=5,
        routed_at=T0,
        config=CONFIG,
    )
    assert [key for key, _ in facts] == ["day|2026-01-15|email|gosselies|fr|satisfaction_survey"]
    assert facts[0][1]["channel"] == "email"
    assert [entry["measures"] for entry in facts[0][1]["entries"]] == [
        {
            "responses": 1,
            "promoters": 1,
            "csat_answers": 1,
            "csat_sum": 5,
        }
    ]


@pytest.mark.parametrize(
    "governance",
    [
        {"excluded_purposes": ["reporting"]},
        {"purpose": "coaching"},
        {"restricted": True},
    ],
    ids=["objected", "coaching", "restricted"],
)
def test_facts_of_an_event_not_for_reporting_is_nothing(governance: dict[str, Any]) -> None:
    facts = facts_of(
        _tagged("phone", "inbound_call", **governance),
        _raw("inbound_call", "InboundCall", _inbound_body(), service="complaint"),
        source=SOURCE,
        offset=1,
        routed_at=T0,
        config=CONFIG,
    )
    assert facts == []


def test_facts_of_an_event_that_adds_nothing_is_nothing() -> None:
    body = {"recording_id": "r-1", "call_id": "acd-77", "media_ref": "s3://r", "agent_id": AGENT}
    facts = facts_of(
        _tagged("phone", "recording_available"),
        _raw("recording_available", "RecordingAvailable", body, service="complaint"),
        source=SOURCE,
        offset=1,
        routed_at=T0,
        config=CONFIG,
    )
    assert facts == []


def test_the_subject_tag_tells_people_apart_and_is_stable() -> None:
    def tag_of(pseudonym: str) -> bytes:
        facts = facts_of(
            _tagged("email", "email_received", subject_pseudonym=pseudonym),
            _raw("email_received", "EmailMessage", _email(), service="customer_contact"),
            source=SOURCE,
            offset=1,
            routed_at=T0,
            config=CONFIG,
        )
        tag: bytes = facts[0][1]["entries"][0]["subject_tag"]
        return tag

    mine, again, other = tag_of(PSEUDONYM), tag_of(PSEUDONYM), tag_of("s-" + "0" * 32)
    assert mine == again == subject_tag(PSEUDONYM)
    assert mine != other
    assert len(mine) == len(other) == 8
    assert PSEUDONYM.encode() not in mine
    assert mine not in PSEUDONYM.encode()


# ---------------------------------------------------------------------------- batches

MAILBOX = Group("email", "gosselies", "fr", "info@ores.example")
FRIDAY = T0 + timedelta(days=1)  # 2026-01-16 10:30 CET


def _batch() -> list[Entry]:
    """Entries of a batch as extract-facts reads them: two groups (a phone queue and a
    mailbox), two days (Thursday 15 and Friday 16 January), two sources."""

    def call(at: datetime, source: str, offset: int) -> list[Entry]:
        return entries_of(
            _tagged("phone", "inbound_call", occurred_at=at),
            _raw("inbound_call", "InboundCall", _inbound_body(), occurred_at=at),
            source=source,
            offset=offset,
            routed_at=at + timedelta(minutes=1),
            config=CONFIG,
        )

    def mail(at: datetime, source: str, offset: int) -> list[Entry]:
        return entries_of(
            _tagged("email", "email_received", occurred_at=at),
            _raw("email_received", "EmailMessage", _email(), "customer_contact", occurred_at=at),
            source=source,
            offset=offset,
            routed_at=at + timedelta(minutes=1),
            config=CONFIG,
        )

    ores = "contact.ores.v1/0"
    return [
        *call(T0, ores, 20),
        *mail(T0, ores, 21),
        *call(FRIDAY, ores, 22),
        *mail(FRIDAY, ores, 23),
        *call(T0 + timedelta(hours=2), ores, 24),
        *call(T0 + timedelta(hours=3), "contact.comnexio.v1/1", 3),
        *mail(FRIDAY + timedelta(hours=1), ores, 25),
    ]


def test_a_batch_gives_one_fact_per_group_and_day_its_entries_in_order(
    catalog: SchemaCatalog, serde: AvroSerde
) -> None:
    facts = batch_facts(_batch())
    assert [key for key, _ in facts] == [
        "day|2026-01-15|phone|gosselies|fr|ores-outage-fr",
        "day|2026-01-15|email|gosselies|fr|info@ores.example",
        "day|2026-01-16|phone|gosselies|fr|ores-outage-fr",
        "day|2026-01-16|email|gosselies|fr|info@ores.example",
    ]
    groups = [(f["channel"], f["site"], f["language"], f["queue"], f["grain"]) for _, f in facts]
    phone = ("phone", "gosselies", "fr", "ores-outage-fr", "day")
    email = ("email", "gosselies", "fr", "info@ores.example", "day")
    assert groups == [phone, email, phone, email]
    # entries in the order they were read, not sorted by source or offset
    ores, comnexio = "contact.ores.v1/0", "contact.comnexio.v1/1"
    assert [
        [(e["source"], e["source_offset"], e["occurred_at"]) for e in fact["entries"]]
        for _, fact in facts
    ] == [
        [(ores, 20, T0), (ores, 24, T0 + timedelta(hours=2)),
         (comnexio, 3, T0 + timedelta(hours=3))],
        [(ores, 21, T0)],
        [(ores, 22, FRIDAY)],
        [(ores, 23, FRIDAY), (ores, 25, FRIDAY + timedelta(hours=1))],
    ]  # fmt: skip
    assert [e["measures"] for e in facts[1][1]["entries"]] == [{"emails_received": 1}]
    assert [e["measures"] for e in facts[2][1]["entries"]] == [ANSWERED_MEASURES]
    assert {e["subject_tag"] for _, f in facts for e in f["entries"]} == {subject_tag(PSEUDONYM)}
    # the records are KpiFacts: the contract's field names, and they survive its serde
    fact_fields, entry_fields = _fact_fields(catalog)
    contract = catalog.latest("KpiFact")
    for _, fact in facts:
        assert set(fact) == fact_fields
        assert all(set(entry) == entry_fields for entry in fact["entries"])
        writer, back = serde.deserialize(serde.serialize(fact, contract), "KpiFact")
        assert writer == contract
        assert back == fact


def test_a_batch_keys_a_complaints_week_fact_by_its_week(
    catalog: SchemaCatalog, serde: AvroSerde
) -> None:
    # a complaint call on Thursday and one on Friday: two day facts, one week fact
    entries = [
        entry
        for offset, at in ((30, T0), (31, FRIDAY))
        for entry in entries_of(
            _tagged("phone", "inbound_call", occurred_at=at),
            _raw("inbound_call", "InboundCall", _inbound_body(), "complaint", occurred_at=at),
            source=SOURCE,
            offset=offset,
            routed_at=at,
            config=CONFIG,
        )
    ]
    facts = batch_facts(entries)
    assert [key for key, _ in facts] == [
        "day|2026-01-15|phone|gosselies|fr|ores-outage-fr",
        OUTAGE_WEEK_KEY,
        "day|2026-01-16|phone|gosselies|fr|ores-outage-fr",
    ]
    week = facts[1][1]
    assert week["grain"] == WEEK
    assert serde.deserialize(serde.serialize(week, catalog.latest("KpiFact")))[1] == week
    assert [(e["source_offset"], e["measures"]) for e in week["entries"]] == [
        (30, {"complaints": 1}),
        (31, {"complaints": 1}),
    ]
    cells: dict[str, Cell] = {}
    apply_fact(cells, week, K, GRACE)
    assert cells == {
        OUTAGE_WEEK_KEY: Cell(
            {"complaints": 2}, [subject_tag(PSEUDONYM)], False, {SOURCE: 31}, 2, 0
        )
    }


def test_an_empty_batch_gives_no_fact() -> None:
    assert batch_facts([]) == []


# ---------------------------------------------------------------------------- privacy


def _every_event() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """One tagged event per channel and kind, each full of personal data."""
    comment = {
        "comment_id": "fb-1",
        "platform": "facebook",
        "post_ref": "p-1",
        "author_display_name": FREE_TEXT,
        "text": FREE_TEXT,
    }
    reply = {
        "comment_id": "fb-1",
        "reply_id": "fb-2",
        "text": FREE_TEXT,
        "agent_id": AGENT,
        "comment_received_at": T0 - timedelta(minutes=5),
    }
    email_reply = _email(in_reply_to="<m-0@example.be>", replied_to_received_at=T0 - timedelta(1))
    callback = {"callback_id": "cb-1", "requested_for": T0, "callback_number": PHONE}
    events = [
        ("phone", "inbound_call", "InboundCall", _inbound_body(), "complaint"),
        ("phone", "callback_requested", "CallbackRequested", callback, "callback"),
        ("chat", "chatbot_session", "ChatSession", _chat(agent_id=AGENT), "chatbot"),
        ("email", "email_sent", "EmailMessage", email_reply, "customer_contact"),
        ("social", "comment_received", "CommentReceived", comment, "complaint"),
        ("social", "reply_sent", "ReplySent", reply, "social_moderation"),
        ("survey", "survey_answered", "SurveyAnswered", _answer(3, csat=2), "satisfaction_survey"),
    ]
    return [
        (_tagged(channel, kind), _raw(kind, branch, body, service))
        for channel, kind, branch, body, service in events
    ]


def test_no_personal_data_reaches_a_fact_a_figure_or_a_kpi() -> None:
    facts = [
        fact
        for offset, (tagged, raw) in enumerate(_every_event())
        for fact in facts_of(tagged, raw, source=SOURCE, offset=offset, routed_at=T0, config=CONFIG)
    ]
    assert len(facts) == 9  # seven day facts, two complaint week facts
    for _, fact in facts:
        assert [type(v) for v in fact.values()].count(bytes) == 0
        (entry,) = fact["entries"]
        assert [type(v) for v in entry.values()].count(bytes) == 1
        assert len(entry["subject_tag"]) == 8
    facts_text = repr(facts)
    for value in PERSONAL:
        assert value not in facts_text
    # five people's events, so that figures come out anonymous and carry their measures
    cells: dict[str, Cell] = {}
    touched: dict[str, tuple[Window, Group]] = {}
    for n, (_, fact) in enumerate(facts):
        for person, tag in enumerate(TAGS[:5]):
            (entry,) = fact["entries"]
            entry = entry | {"source_offset": n * 10 + person, "subject_tag": tag}
            for key, window, group in apply_fact(cells, fact | {"entries": [entry]}, 2, GRACE):
                touched[key] = (window, group)
    figures = [
        figure_of(window, group, cells[key], 2, final=False, now=NOW)
        for key, (window, group) in touched.items()
    ]
    assert figures
    assert all(not figure["suppressed"] and figure["measures"] for figure in figures)
    figures_text = repr(figures) + repr([kpis_of(figure["measures"]) for figure in figures])
    for value in (*PERSONAL, *(repr(tag) for tag in TAGS)):
        assert value not in figures_text
    assert not [v for figure in figures for v in figure.values() if isinstance(v, bytes)]


def test_five_people_end_to_end_give_hand_computed_kpis() -> None:
    # five callers in the same hour: waits 15, 15, 25, 5 and 40 s; one abandons
    def answered(wait_s: int, duration_s: int, wrap_up_s: int | None) -> dict[str, Any]:
        return _inbound_body(
            queued_at=T0,
            answered_at=T0 + timedelta(seconds=wait_s),
            duration_s=duration_s,
            wrap_up_s=wrap_up_s,
        )

    calls = [
        answered(15, 100, 20),
        answered(15, 200, None),
        answered(25, 300, 40),
        answered(5, 50, 10),
        _inbound_body(outcome="abandoned", answered_at=None, duration_s=40),
    ]
    cells: dict[str, Cell] = {}
    for offset, body in enumerate(calls):
        tagged = _tagged("phone", "inbound_call", subject_pseudonym=f"s-person-{offset}")
        for _, fact in facts_of(
            tagged,
            _raw("inbound_call", "InboundCall", body),
            source=SOURCE,
            offset=offset,
            routed_at=T0,
            config=CONFIG,
        ):
            apply_fact(cells, fact, K, GRACE)
    figure = figure_of(DAY_T0, OUTAGE, cells[OUTAGE_DAY_KEY], K, final=False, now=NOW)
    assert figure["suppressed"] is False
    assert figure["measures"] == {
        "offered": 5,
        "answered": 4,
        "abandoned": 1,
        "answered_in_sl": 3,  # 15, 15, 5 s
        "answer_wait_ms": 60_000,  # 15 + 15 + 25 + 5 s
        "handle_ms": 720_000,  # 120 + 200 + 340 + 60 s
    }
    kpis = kpis_of(figure["measures"])
    assert (kpis["service_level"], kpis["asa_s"], kpis["aht_s"]) == (0.6, 15.0, 180.0)
    assert (kpis["offered"], kpis["answered"], kpis["abandoned"]) == (5, 4, 1)


# ---------------------------------------------------------------------------- kpis


def test_phone_kpis() -> None:
    kpis = kpis_of(
        {
            "offered": 10,
            "answered": 8,
            "abandoned": 2,
            "answered_in_sl": 6,
            "answer_wait_ms": 96_000,  # 8 calls, 12 s each on average
            "handle_ms": 1_200_000,  # 150 s each
            "callbacks_requested": 3,
            "callbacks_done": 2,
        }
    )
    assert kpis["service_level"] == 0.6  # 6 of 10 offered
    assert kpis["asa_s"] == 12.0
    assert kpis["aht_s"] == 150.0
    assert (kpis["callbacks_requested"], kpis["callbacks_done"]) == (3, 2)
    assert kpis_of({"offered": 3, "answered": 3, "answered_in_sl": 2})["service_level"] == 0.6667


def test_nps_and_csat() -> None:
    kpis = kpis_of(
        {
            "responses": 6,
            "promoters": 3,
            "passives": 1,
            "detractors": 2,
            "csat_answers": 3,
            "csat_sum": 13,
        }
    )
    assert kpis["nps"] == 16.7  # (3 - 2) / 6 = 16.67 %
    assert kpis["csat"] == 4.33  # 13 / 3
    assert kpis["responses"] == 6
    assert kpis_of({"responses": 4, "promoters": 1, "detractors": 3})["nps"] == -50.0
    assert kpis_of({"responses": 2, "passives": 2})["nps"] == 0.0
    assert kpis_of({"responses": 2, "promoters": 2})["nps"] == 100.0


def test_digital_kpis() -> None:
    kpis = kpis_of(
        {
            "conversations": 8,
            "bot_sessions": 5,
            "bot_only": 3,
            "handed_to_agent": 2,
            "first_responses": 3,
            "first_response_ms": 45_000,
            "emails_received": 4,
            "emails_answered": 2,
            "email_responses": 2,
            "email_response_ms": 7_200_000,
            "comments": 6,
            "moderated": 1,
            "social_responses": 1,
            "social_response_ms": 90_000,
            "complaints": 2,
        }
    )
    assert kpis["bot_only_share"] == 0.375  # 3 of 8
    assert kpis["handed_share"] == 0.25  # 2 of 8
    assert kpis["first_response_s"] == 15.0
    assert kpis["email_response_s"] == 3600.0
    assert kpis["social_response_s"] == 90.0
    assert (kpis["emails_received"], kpis["emails_answered"]) == (4, 2)
    assert (kpis["comments"], kpis["moderated"], kpis["complaints"]) == (6, 1, 2)


def test_kpis_without_data_are_none() -> None:
    kpis = kpis_of({})
    assert list(kpis) == list(KPI_NAMES)
    assert all(value is None for value in kpis.values())
    # counts present but nothing to divide by: the ratios and means stay None
    partial = kpis_of({"offered": 0, "responses": 0, "abandoned": 2})
    assert partial["service_level"] is None
    assert partial["asa_s"] is None
    assert partial["nps"] is None
    assert partial["abandoned"] == 2
