"""The contact centre's reporting as anonymous aggregates (privacy notice: "les enquêtes et
le reporting", "indicateurs de performance", "reporting digital").

Pure: no Kafka, no clock of its own. `measures_of` says what one decoded contact event adds
(counts and sums, durations in milliseconds, never an identifier, text or agent id);
`windows_of` places it in its hour, day and ISO-week windows of Europe/Brussels local time;
`Cell` is one window of one group, which counts distinct people only up to the anonymity
threshold k and remembers, per source partition, the last offset it applied, so an event
replayed after a crash is not counted twice; `figure_of` turns a cell into the published
`KpiFigure` (its measures withheld under k); `kpis_of` derives the indicators a person reads
(service level, NPS, average times) from the measures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo

BRUSSELS: Final = ZoneInfo("Europe/Brussels")
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
HOUR, DAY, WEEK = "hour", "day", "week"
GRAINS: Final = (HOUR, DAY, WEEK)
REPORTING: Final = "reporting"
SOURCE_PURPOSES: Final = frozenset({"contact_handling"})
PROMOTER_MIN, DETRACTOR_MAX = 9, 6
# The kinds that open a contact: a complaint is counted once, on its opening event.
OPENING_KINDS: Final = frozenset(
    {"inbound_call", "callback_requested", "click_to_call", "chat_session", "chatbot_session",
     "email_received", "comment_received"}
)  # fmt: skip
COMPLAINT_SERVICE: Final = "complaint"


@dataclass(frozen=True, slots=True)
class KpiConfig:
    """The reporting's settings: the service-level threshold, the anonymity threshold k,
    how long after its end a window still takes late events (judged by routing time), and
    how long after that the app keeps the window's working state (`keep_cells`)."""

    service_level_s: int = 20
    min_subjects: int = 5
    grace: timedelta = timedelta(hours=6)
    keep_cells: timedelta = timedelta(days=14)

    def __post_init__(self) -> None:
        if self.service_level_s <= 0:
            raise ValueError("the service-level threshold must be a positive number of seconds")
        if self.min_subjects < 2:
            raise ValueError("the anonymity threshold k must be at least 2")
        if self.grace < timedelta(0):
            raise ValueError("the grace period cannot be negative")
        if self.keep_cells < timedelta(0):
            raise ValueError("the time cells are kept after their grace period cannot be negative")

    def forgotten(self, window: Window, now: datetime) -> bool:
        """Whether the app has let go of `window`'s cell by `now`: its figure was final
        `keep_cells` ago. The cell's subject tags and source offsets go with it (storage
        limitation), and the table stops growing with the reporting's history."""
        return now >= window.end + self.grace + self.keep_cells


@dataclass(frozen=True, slots=True)
class Group:
    """What a figure is grouped by: no person, no agent, only where and how they came in."""

    channel: str
    site: str | None
    language: str | None
    queue: str | None

    @property
    def key(self) -> str:
        return "|".join((self.channel, self.site or "", self.language or "", self.queue or ""))


@dataclass(frozen=True, slots=True)
class Window:
    grain: str
    start: datetime  # UTC
    end: datetime  # UTC, exclusive
    label: str


# ---------------------------------------------------------------------------- windows


def windows_of(occurred_at: datetime, grain: str) -> tuple[Window, ...]:
    """The windows an event of `occurred_at` falls in: hour and day for grain 'day', the ISO
    week for grain 'week'. Local time is Europe/Brussels, so a day lasts 23 or 25 hours on
    the days the clocks change."""
    # Brussels is whole hours from UTC: every instant of a UTC hour has the same windows
    return _windows_of_hour(int(occurred_at.timestamp()) // 3600, grain)


@lru_cache(maxsize=4096)
def _windows_of_hour(hour: int, grain: str) -> tuple[Window, ...]:
    local = (EPOCH + timedelta(hours=hour)).astimezone(BRUSSELS)
    if grain == WEEK:
        return (week_window(local),)
    return hour_window(local), day_window(local)


def hour_window(local: datetime) -> Window:
    # Brussels is a whole number of hours from UTC, so local hours are UTC hours; the label
    # carries the offset because 02:00-03:00 happens twice on the last Sunday of October.
    start = local.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    shown = start.astimezone(BRUSSELS)
    label = shown.strftime("%Y-%m-%d %H:%M ") + _offset(shown)
    return Window(HOUR, start, start + timedelta(hours=1), label)


def day_window(local: datetime) -> Window:
    day = local.date()
    start = datetime(day.year, day.month, day.day, tzinfo=BRUSSELS)
    end = start.date() + timedelta(days=1)
    return Window(DAY, start.astimezone(UTC), _local_midnight(end), day.isoformat())


def week_window(local: datetime) -> Window:
    monday = local.date() - timedelta(days=local.weekday())
    year, week, _ = monday.isocalendar()
    start = _local_midnight(monday)
    return Window(WEEK, start, _local_midnight(monday + timedelta(days=7)), f"{year}-W{week:02d}")


def _local_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=BRUSSELS).astimezone(UTC)


def _offset(local: datetime) -> str:
    offset = local.utcoffset() or timedelta(0)
    hours, rest = divmod(int(offset.total_seconds()), 3600)
    return f"{hours:+03d}:{rest // 60:02d}"


def routed_time(timestamp_ms: int) -> datetime:
    """A Kafka record timestamp (milliseconds) as the instant lateness is judged by."""
    return EPOCH + timedelta(milliseconds=timestamp_ms)


def is_late(window: Window, routed_at: datetime, grace: timedelta) -> bool:
    """An event routed after its window's end plus the grace period no longer changes it."""
    return routed_at >= window.end + grace


# ---------------------------------------------------------------------------- measures


def counts_for_reporting(governance: Mapping[str, Any]) -> bool:
    """Whether a tagged event may be used for reporting: it is contact handling (not, say,
    COMNEXIO's coaching re-listening) and its subject has not objected to reporting.
    Restricted subjects' events never reach the tagged topics in the first place."""
    if governance.get("purpose") not in SOURCE_PURPOSES:
        return False
    if governance.get("restricted"):
        return False
    return REPORTING not in (governance.get("excluded_purposes") or ())


def group_of(channel: str, envelope: Mapping[str, Any], body: Mapping[str, Any]) -> Group:
    """The event's group: ACD queue for calls, mailbox for e-mail, otherwise its service. A
    survey answer is counted under the channel of the contact it rates, when it says so."""
    queue = body.get("queue") or body.get("mailbox") or envelope.get("service")
    shown_channel = channel
    if channel == "survey" and body.get("related_channel"):
        shown_channel = str(body["related_channel"])
    return Group(shown_channel, envelope.get("site"), envelope.get("language"), queue)


def measures_of(
    channel: str, kind: str, envelope: Mapping[str, Any], body: Mapping[str, Any],
    config: KpiConfig,
) -> tuple[dict[str, int], dict[str, int]]:  # fmt: skip
    """What one event adds to its hour/day windows and to its week window."""
    daily = _CHANNEL_MEASURES[channel](kind, envelope, body, config)
    weekly: dict[str, int] = {}
    if kind in OPENING_KINDS and envelope.get("service") == COMPLAINT_SERVICE:
        weekly["complaints"] = 1
    return daily, weekly


def _phone(kind: str, envelope: Mapping[str, Any], body: Mapping[str, Any],
           config: KpiConfig) -> dict[str, int]:  # fmt: skip
    if kind == "inbound_call":
        return _inbound_call(envelope, body, config)
    if kind == "callback_requested":
        return {"callbacks_requested": 1}
    if kind == "outbound_call":
        return {"callbacks_done": 1} if body.get("reason") == "callback" else {"outbound_calls": 1}
    if kind == "click_to_call":
        return {"click_to_call": 1}
    return {}


def _inbound_call(envelope: Mapping[str, Any], body: Mapping[str, Any],
                  config: KpiConfig) -> dict[str, int]:  # fmt: skip
    answered_at = body.get("answered_at")
    if answered_at is None or body.get("outcome") == "abandoned":
        return {"offered": 1, "abandoned": 1}
    queued_at = body.get("queued_at") or envelope["occurred_at"]
    wait_ms = max(0, _ms(answered_at - queued_at))
    handle_s = int(body.get("duration_s") or 0) + int(body.get("wrap_up_s") or 0)
    return {
        "offered": 1,
        "answered": 1,
        "answered_in_sl": int(wait_ms <= config.service_level_s * 1000),
        "answer_wait_ms": wait_ms,
        "handle_ms": handle_s * 1000,
    }


def _chat(kind: str, envelope: Mapping[str, Any], body: Mapping[str, Any],
          config: KpiConfig) -> dict[str, int]:  # fmt: skip
    if kind not in ("chat_session", "chatbot_session"):
        return {}
    handed = bool(body.get("handed_to_agent"))
    out = {"conversations": 1}
    if kind == "chatbot_session":
        out["bot_sessions"] = 1
        out["bot_only" if not handed else "handed_to_agent"] = 1
    first = body.get("first_response_at")
    if first is not None:
        out["first_responses"] = 1
        out["first_response_ms"] = max(0, _ms(first - body["started_at"]))
    return out


def _email(kind: str, envelope: Mapping[str, Any], body: Mapping[str, Any],
           config: KpiConfig) -> dict[str, int]:  # fmt: skip
    if kind == "email_received":
        return {"emails_received": 1}
    if kind != "email_sent" or not body.get("in_reply_to"):
        return {"emails_sent": 1} if kind == "email_sent" else {}
    return {"emails_answered": 1} | _response("email", envelope, body.get("replied_to_received_at"))


def _social(kind: str, envelope: Mapping[str, Any], body: Mapping[str, Any],
            config: KpiConfig) -> dict[str, int]:  # fmt: skip
    if kind == "comment_received":
        return {"comments": 1}
    if kind == "moderated":
        return {"moderated": 1}
    if kind == "reply_sent":
        return {"replies": 1} | _response("social", envelope, body.get("comment_received_at"))
    return {}


def _response(channel: str, envelope: Mapping[str, Any], received_at: Any) -> dict[str, int]:
    if received_at is None:
        return {}
    response_ms = max(0, _ms(envelope["occurred_at"] - received_at))
    return {f"{channel}_responses": 1, f"{channel}_response_ms": response_ms}


def _survey(kind: str, envelope: Mapping[str, Any], body: Mapping[str, Any],
            config: KpiConfig) -> dict[str, int]:  # fmt: skip
    if kind == "survey_sent":
        return {"surveys_sent": 1}
    if kind != "survey_answered":
        return {}
    score = int(body["score"])
    band = "promoters" if score >= PROMOTER_MIN else "detractors" if score <= DETRACTOR_MAX \
        else "passives"  # fmt: skip
    out = {"responses": 1, band: 1}
    if body.get("csat") is not None:
        out |= {"csat_answers": 1, "csat_sum": int(body["csat"])}
    return out


_CHANNEL_MEASURES: Final = {
    "phone": _phone, "chat": _chat, "email": _email, "social": _social, "survey": _survey,
}  # fmt: skip


def _ms(delta: timedelta) -> int:
    return delta // timedelta(milliseconds=1)


def subject_tag(pseudonym: str) -> bytes:
    """8 bytes standing for the subject inside one window's state, only to count distinct
    people up to k; never published, dropped from the window once k are counted."""
    return hashlib.blake2b(pseudonym.encode(), digest_size=8, person=b"cf-kpi-k").digest()


# ---------------------------------------------------------------------------- cells


@dataclass(slots=True)
class Cell:
    """One window of one group: its measures, and what it needs to stay exact and private."""

    measures: dict[str, int] = field(default_factory=dict)
    tags: list[bytes] = field(default_factory=list)  # < k distinct subject tags, then empty
    anonymous: bool = False  # k distinct subjects counted
    applied: dict[str, int] = field(default_factory=dict)  # source partition -> last offset
    revision: int = 0
    late: int = 0

    def apply(self, source: str, offset: int, tag: bytes, measures: Mapping[str, int],
              min_subjects: int) -> bool:  # fmt: skip
        """Add one event's measures; False (nothing changes) when this source offset was
        already applied, as after a replay."""
        if offset <= self.applied.get(source, -1):
            return False
        self.applied[source] = offset
        for name, value in measures.items():
            self.measures[name] = self.measures.get(name, 0) + value
        if not self.anonymous and tag not in self.tags:
            self.tags.append(tag)
            if len(self.tags) >= min_subjects:
                self.anonymous, self.tags = True, []
        self.revision += 1
        return True

    def skip_late(self, source: str, offset: int) -> bool:
        """Count a late event once; it changes no measure."""
        if offset <= self.applied.get(source, -1):
            return False
        self.applied[source] = offset
        self.late += 1
        return True

    def to_record(self) -> dict[str, Any]:
        """The cell as a `KpiCell` record (the reporting app's table value)."""
        return {"measures": self.measures, "subject_tags": self.tags,
                "anonymous": self.anonymous, "applied": self.applied,
                "revision": self.revision, "late": self.late}  # fmt: skip

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Cell:
        return cls(dict(record["measures"]), list(record["subject_tags"]),
                   bool(record["anonymous"]), dict(record["applied"]), int(record["revision"]),
                   int(record["late"]))  # fmt: skip


def cell_key(window: Window, group: Group) -> str:
    return f"{window.grain}|{window.label}|{group.key}"


def parse_cell_key(key: str) -> tuple[Window, Group]:
    """The window and group a cell key names."""
    grain, label, channel, site, language, queue = key.split("|")
    return window_of_label(grain, label), Group(channel, site or None, language or None,
                                                queue or None)  # fmt: skip


def cells_to_forget(keys: Iterable[str], now: datetime, config: KpiConfig) -> list[str]:
    """The cell keys among `keys` whose window the app lets go of by `now`
    (`KpiConfig.forgotten`); a key that names no window is left alone."""
    gone = []
    for key in keys:
        try:
            window = parse_cell_key(key)[0]
        except ValueError:
            continue
        if config.forgotten(window, now):
            gone.append(key)
    return gone


def window_of_label(grain: str, label: str) -> Window:
    """The window a label names: '2026-11-30 14:00 +01:00', '2026-11-30' or '2026-W49'."""
    if grain == HOUR:
        return hour_window(datetime.strptime(label, "%Y-%m-%d %H:%M %z"))
    if grain == DAY:
        return day_window(datetime.fromisoformat(label).replace(tzinfo=BRUSSELS))
    year, week = label.split("-W")
    monday = date.fromisocalendar(int(year), int(week), 1)
    return week_window(datetime(monday.year, monday.month, monday.day, tzinfo=BRUSSELS))


def figure_of(window: Window, group: Group, cell: Cell, min_subjects: int, *, final: bool,
              now: datetime) -> dict[str, Any]:  # fmt: skip
    """The published figure (a KpiFigure record): nothing but counts and sums, and not even
    those under k distinct people."""
    return {
        "grain": window.grain, "window_start": window.start, "window_end": window.end,
        "label": window.label, "channel": group.channel, "site": group.site,
        "language": group.language, "queue": group.queue, "suppressed": not cell.anonymous,
        "min_subjects": min_subjects, "measures": dict(cell.measures) if cell.anonymous else {},
        "revision": cell.revision, "final": final, "updated_at": now,
    }  # fmt: skip


# ---------------------------------------------------------------------------- indicators

KPI_NAMES: Final = (
    "offered", "answered", "abandoned", "service_level", "asa_s", "aht_s",
    "callbacks_requested", "callbacks_done", "conversations", "bot_only_share", "handed_share",
    "first_response_s", "emails_received", "emails_answered", "email_response_s", "comments",
    "moderated", "social_response_s", "surveys_sent", "responses", "nps", "csat", "complaints",
)  # fmt: skip


def kpis_of(measures: Mapping[str, int]) -> dict[str, float | int | None]:
    """The indicators a person reads, derived from a figure's measures (None: no data)."""
    m = measures.get
    offered, answered = m("offered", 0), m("answered", 0)
    responses = m("responses", 0)
    nps = None
    if responses:
        nps = round(100 * (m("promoters", 0) - m("detractors", 0)) / responses, 1)
    return {
        "offered": m("offered"), "answered": m("answered"), "abandoned": m("abandoned"),
        "service_level": _ratio(m("answered_in_sl", 0), offered),
        "asa_s": _mean_s(m("answer_wait_ms", 0), answered),
        "aht_s": _mean_s(m("handle_ms", 0), answered),
        "callbacks_requested": m("callbacks_requested"), "callbacks_done": m("callbacks_done"),
        "conversations": m("conversations"),
        "bot_only_share": _ratio(m("bot_only", 0), m("conversations", 0)),
        "handed_share": _ratio(m("handed_to_agent", 0), m("conversations", 0)),
        "first_response_s": _mean_s(m("first_response_ms", 0), m("first_responses", 0)),
        "emails_received": m("emails_received"), "emails_answered": m("emails_answered"),
        "email_response_s": _mean_s(m("email_response_ms", 0), m("email_responses", 0)),
        "comments": m("comments"), "moderated": m("moderated"),
        "social_response_s": _mean_s(m("social_response_ms", 0), m("social_responses", 0)),
        "surveys_sent": m("surveys_sent"), "responses": m("responses"), "nps": nps,
        "csat": _mean(m("csat_sum", 0), m("csat_answers", 0)),
        "complaints": m("complaints"),
    }  # fmt: skip


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean_s(total_ms: int, count: int) -> float | None:
    return round(total_ms / count / 1000, 1) if count else None


def _mean(total: int, count: int) -> float | None:
    return round(total / count, 2) if count else None


def add_measures(into: dict[str, int], more: Mapping[str, int]) -> None:
    for name, value in more.items():
        into[name] = into.get(name, 0) + value


# ---------------------------------------------------------------------------- facts


Entry = tuple[str, Group, str, dict[str, Any]]  # cell key of its day or week, group, grain, entry


def entries_of(
    tagged: Mapping[str, Any], raw: Mapping[str, Any], *, source: str, offset: int,
    routed_at: datetime, config: KpiConfig,
) -> list[Entry]:  # fmt: skip
    """What one tagged event adds: an entry for its hour and day windows, and one for its
    week window when it adds a weekly measure. Empty when the event may not be used for
    reporting or adds nothing."""
    if not counts_for_reporting(tagged["governance"]):
        return []
    envelope = raw["envelope"]
    payload = raw["payload"]
    body = payload[1] if isinstance(payload, tuple) else payload
    daily, weekly = measures_of(tagged["channel"], tagged["kind"], envelope, body, config)
    group = group_of(tagged["channel"], envelope, body)
    occurred_at = tagged["occurred_at"]
    tag = subject_tag(tagged["governance"]["subject_pseudonym"])
    out = []
    for grain, measures in ((DAY, daily), (WEEK, weekly)):
        if measures:
            entry = {
                "source": source, "source_offset": offset, "routed_at": routed_at,
                "occurred_at": occurred_at, "subject_tag": tag, "measures": measures,
            }  # fmt: skip
            # every window an entry updates lies inside its day (or week): one partition
            out.append((cell_key(windows_of(occurred_at, grain)[-1], group), group, grain, entry))
    return out


def batch_facts(entries: Iterable[Entry]) -> list[tuple[str, dict[str, Any]]]:
    """The `KpiFact` records of a batch of entries, one per day (or week) and group, each
    with its repartition key; entries keep their order, so each source's offsets rise."""
    facts: dict[str, dict[str, Any]] = {}
    for key, group, grain, entry in entries:
        fact = facts.get(key)
        if fact is None:
            fact = facts[key] = {"channel": group.channel, "site": group.site,
                                 "language": group.language, "queue": group.queue,
                                 "grain": grain, "entries": []}  # fmt: skip
        fact["entries"].append(entry)
    return list(facts.items())


def facts_of(
    tagged: Mapping[str, Any], raw: Mapping[str, Any], *, source: str, offset: int,
    routed_at: datetime, config: KpiConfig,
) -> list[tuple[str, dict[str, Any]]]:  # fmt: skip
    """The `KpiFact` records of one tagged event alone (see `entries_of`)."""
    return batch_facts(entries_of(tagged, raw, source=source, offset=offset,
                                  routed_at=routed_at, config=config))  # fmt: skip


def group_of_fact(fact: Mapping[str, Any]) -> Group:
    return Group(fact["channel"], fact["site"], fact["language"], fact["queue"])


def apply_fact(
    cells: Any, fact: Mapping[str, Any], min_subjects: int, grace: timedelta,
    forgotten: Callable[[Window], bool] | None = None,
) -> list[tuple[str, Window, Group]]:  # fmt: skip
    """Apply a fact's entries to their windows' cells in `cells` (a mapping of cell key to
    `Cell`, e.g. a dict, or a view of the app's table that loads and stores), each cell
    loaded and stored once; returns the windows touched, replayed or not, so their figures
    are published again. A window `forgotten` says the app let go of is left alone: a cell
    made afresh there would publish a figure of the few entries that came that late over
    the final one."""
    group = group_of_fact(fact)
    loaded: dict[str, tuple[Window, Cell | None, Cell]] = {}
    changed: set[str] = set()
    for entry in fact["entries"]:
        for window in windows_of(entry["occurred_at"], fact["grain"]):
            if forgotten is not None and forgotten(window):
                continue
            key = cell_key(window, group)
            if key not in loaded:
                known = cells.get(key)
                loaded[key] = (window, known, known or Cell())
            cell = loaded[key][2]
            source, offset = entry["source"], entry["source_offset"]
            if is_late(window, entry["routed_at"], grace):
                done = cell.skip_late(source, offset)
            else:
                done = cell.apply(source, offset, entry["subject_tag"], entry["measures"],
                                  min_subjects)  # fmt: skip
            if done:
                changed.add(key)
    touched = []
    for key, (window, known, cell) in loaded.items():
        if key in changed:
            cells[key] = cell
        if key in changed or known is not None:
            touched.append((key, window, group))
    return touched
