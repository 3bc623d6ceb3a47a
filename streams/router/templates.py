"""A routed event's output records, written without encoding them field by field.

The tagged event, the retention input and the hold signal of an event vary with the event
and its subject mostly through string and bytes fields, and Avro writes such a field as
its length and bytes wherever it sits. So a record encoded once with a marker in each of
those fields, cut at the markers (`Parts`), gives the exact bytes of any record of the same
shape once `fill` writes the real values into the gaps.

- `TaggedWriter` keeps one such skeleton of the tagged event per attribution, channel,
  route and excluded purposes (the subject's objections to derived purposes, a handful
  of combinations): the decode stage writes the event's head (ids, kind, time,
  attribution), the main process adds the subject, key id, sealed event and trace parent;
- `TemplateEncoder` (decode stage, helper process) encodes the retention input and hold
  signal of an event whole but for the subject, which the main process fills in, and
  the tagged event's head.

Each skeleton is checked when made (every marker once, in field order, the time where it
belongs); a record whose shape it cannot vouch for is encoded whole, as before.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from processors.policy import Attribution, Decisions
from processors.routing import RecordingRef, retain_until
from schemas import records
from schemas.catalog import SchemaCatalog
from schemas.serde import AvroSerde
from schemas.varint import millis_since_epoch, zigzag_varint

Parts = tuple[bytes, ...]
_MAX_SKELETONS: Final = 10_000  # per cache: an attribution carries the event's purpose
_ATTEMPTS: Final = 3


avro_varint: Final = zigzag_varint
"""The Avro varint of `number`, as a string's or bytes' length is written."""

_LENGTHS: Final = tuple(avro_varint(n) for n in range(16_384))


def length_prefixed(value: bytes) -> bytes:
    """How Avro writes a string's UTF-8 or a bytes value: its length, then the bytes."""
    size = len(value)
    return (_LENGTHS[size] if size < 16_384 else avro_varint(size)) + value


def fill(parts: Parts, values: Sequence[bytes]) -> bytes:
    """The record of a template: its parts with each value (length-prefixed) in between."""
    pieces = [parts[0]]
    for value, part in zip(values, parts[1:], strict=True):
        pieces.append(length_prefixed(value))
        pieces.append(part)
    return b"".join(pieces)


class Templates(NamedTuple):
    retention: tuple[bytes, Parts] | None  # (recording id, parts); gap: subject pseudonym
    signal: Parts | None  # gap: subject pseudonym
    tagged_head: bytes | None  # the tagged event up to its subject (`TaggedWriter.head`)


class TemplateEncoder:
    """Encodes the retention input and hold signal of an event, but for its subject."""

    def __init__(self, schemas: SchemaCatalog, serde: AvroSerde, decisions: Decisions) -> None:
        self._serde = serde
        self._decisions = decisions
        self._tagged = TaggedWriter(schemas, serde)
        self._retention = schemas.latest("RecordingRetention")
        self._signal = schemas.latest("HoldSignal")
        self._subject = ""
        self._mark = b""
        self._new_marker()
        # Retention records cut at their per-event fields, per shape (channel, kind, media
        # reference or none, attribution); None where a shape cannot be cut cleanly.
        self._retention_skeletons: dict[tuple[Any, ...], tuple[Parts, bytes] | None] = {}

    def templates(self, facts: dict[str, Any], recording: RecordingRef | None) -> Templates | None:
        """`facts`: event_id, contact_id, channel, kind, occurred_at, client, service, purpose.
        None when no policy rule applies (the event is quarantined)."""
        key = (facts["client"], facts["service"], facts["purpose"], facts["channel"],
               facts["kind"])  # fmt: skip
        attribution, hold_reason = self._decisions(key)
        if attribution is None:
            return None
        for _ in range(_ATTEMPTS):
            try:
                retention = None
                if recording is not None:
                    retention = self._retention_parts(facts, attribution, recording)
                signal = None
                if hold_reason is not None:
                    signal = self._signal_parts(facts, hold_reason)
                head = self._tagged.head(
                    facts["event_id"], facts["contact_id"], facts["channel"], facts["kind"],
                    facts["occurred_at"], attribution,
                )  # fmt: skip
                return Templates(retention, signal, head)
            except _Clash:  # a field's text contains the marker: pick another one
                self._new_marker()
        raise RuntimeError("no template marker absent from the event's fields")

    def _retention_parts(
        self, facts: dict[str, Any], attribution: Attribution, recording: RecordingRef
    ) -> tuple[bytes, Parts] | None:
        """(recording id, parts), or None when the class keeps no recordings."""
        policy = self._decisions.policy
        period = policy.retention_classes[attribution.retention_class].recording_period_days
        until = retain_until(recording.ended_at, period)
        if until is None:
            return None
        recording_id = recording.recording_id.encode()
        key = (facts["channel"], recording.recording_kind, recording.media_ref is None,
               attribution)  # fmt: skip
        if key not in self._retention_skeletons:
            if len(self._retention_skeletons) >= _MAX_SKELETONS:
                self._retention_skeletons.clear()
            self._retention_skeletons[key] = self._retention_skeleton(facts, attribution, recording)
        skeleton = self._retention_skeletons[key]
        if skeleton is not None and recording.ended_at.tzinfo is not None:
            head, tail = skeleton
            values = [recording_id, facts["contact_id"].encode()]
            if recording.media_ref is not None:
                values.append(recording.media_ref.encode())
            times = timestamp_millis(recording.ended_at) + timestamp_millis(until)
            return recording_id, (fill(head, values), times + tail)
        value = records.recording_retention(
            recording_id=recording.recording_id, contact_id=facts["contact_id"],
            channel=facts["channel"], recording_kind=recording.recording_kind,
            media_ref=recording.media_ref, controller=attribution.controller,
            purpose=attribution.purpose, subject_pseudonym=self._subject,
            ended_at=recording.ended_at, retain_until=until,
            policy_version=attribution.policy_version,
        )  # fmt: skip
        parts = _cut(self._serde.serialize(value, self._retention), (self._mark,))
        return recording.recording_id.encode(), parts

    def _retention_skeleton(
        self, facts: dict[str, Any], attribution: Attribution, recording: RecordingRef
    ) -> tuple[Parts, bytes] | None:
        """(parts around the recording id, contact id and media reference, bytes after the
        two instants) of the retention records of this shape; None if it does not cut."""
        names = ("recording_id", "contact_id", "media_ref")
        markers = {name: _marker(name) for name in names}
        has_media = recording.media_ref is not None
        value = records.recording_retention(
            recording_id=markers["recording_id"], contact_id=markers["contact_id"],
            channel=facts["channel"], recording_kind=recording.recording_kind,
            media_ref=markers["media_ref"] if has_media else None,
            controller=attribution.controller, purpose=attribution.purpose,
            subject_pseudonym=self._subject, ended_at=_SOME_TIME, retain_until=_OTHER_TIME,
            policy_version=attribution.policy_version,
        )  # fmt: skip
        marks = [length_prefixed(markers[name].encode()) for name in names[: 3 if has_media else 2]]
        try:
            parts = _cut(self._serde.serialize(value, self._retention), (*marks, self._mark))
        except _Clash:
            return None
        times = timestamp_millis(_SOME_TIME) + timestamp_millis(_OTHER_TIME)
        if not parts[-1].startswith(times):  # the instants follow the subject in the schema
            return None
        return parts[:-1], parts[-1][len(times) :]

    def _signal_parts(self, facts: dict[str, Any], reason: str) -> Parts:
        signal = {
            "signal_id": facts["event_id"],
            "reason": reason,
            "subject_pseudonym": self._subject,
            "contact_id": facts["contact_id"],
            "channel": facts["channel"],
            "kind": facts["kind"],
            "occurred_at": facts["occurred_at"],
            "policy_version": self._decisions.policy.version,
        }
        return _cut(self._serde.serialize(signal, self._signal), (self._mark,))

    def _new_marker(self) -> None:
        self._subject = _marker("subject")
        self._mark = length_prefixed(self._subject.encode())


class TaggedWriter:
    """Writes tagged events from skeletons, one per attribution, channel, route and
    excluded purposes (`governance.excluded_purposes`, after the subject in the record).

    In two steps where the router splits its work: `head` (decode stage) writes the bytes
    up to the subject pseudonym, which depend on the event and its attribution only;
    `write` (main process) adds the subject, the route, the key id, the sealed event and
    the trace parent.
    """

    def __init__(self, schemas: SchemaCatalog, serde: AvroSerde) -> None:
        self._serde = serde
        self._tagged = schemas.latest("TaggedContactEvent")
        self._skeletons: dict[tuple[Any, ...], Parts | None] = {}

    def head(
        self,
        event_id: str,
        contact_id: str,
        channel: str,
        kind: str,
        occurred_at: datetime,
        attribution: Attribution,
    ) -> bytes | None:
        """The tagged event's bytes before its subject pseudonym; None if no skeleton.

        Neither the route (restricted or not), the excluded purposes nor the trace parent
        changes them: all are written after the subject."""
        parts = self._parts(attribution, channel, False, False, ())
        if parts is None or occurred_at.tzinfo is None:
            return None
        return b"".join((parts[0], length_prefixed(event_id.encode()), parts[1],
                         length_prefixed(contact_id.encode()), parts[2],
                         length_prefixed(kind.encode()), timestamp_millis(occurred_at),
                         parts[3]))  # fmt: skip

    def write(
        self,
        *,
        head: bytes | None,
        event_id: str,
        contact_id: str,
        channel: str,
        kind: str,
        occurred_at: datetime,
        attribution: Attribution,
        restricted: bool,
        subject: str,
        key_id: str,
        source_fingerprint: str,
        sealed: bytes,
        traceparent: str | None,
        excluded_purposes: tuple[str, ...] = (),
    ) -> bytes:
        """The tagged event; from `head` (this event's `head`) when there is one.
        `excluded_purposes`: the derived purposes the subject objected to, sorted."""
        parts = self._parts(
            attribution, channel, restricted, traceparent is not None, excluded_purposes
        )
        if head is None and parts is not None:
            head = self.head(event_id, contact_id, channel, kind, occurred_at, attribution)
        if parts is not None and head is not None:
            pieces = [head, length_prefixed(subject.encode()), parts[4],
                      length_prefixed(key_id.encode()), parts[5],
                      length_prefixed(source_fingerprint.encode()), parts[6],
                      length_prefixed(sealed), parts[7]]  # fmt: skip
            if traceparent is not None:
                pieces += (length_prefixed(traceparent.encode()), parts[8])
            return b"".join(pieces)
        record = tagged_record(
            event_id, contact_id, channel, kind, occurred_at, attribution, restricted, subject,
            key_id, source_fingerprint, sealed, traceparent, excluded_purposes,
        )  # fmt: skip
        return self._serde.serialize(record, self._tagged)

    def _parts(
        self,
        attribution: Attribution,
        channel: str,
        restricted: bool,
        traced: bool,
        excluded: tuple[str, ...],
    ) -> Parts | None:
        key = (attribution, channel, restricted, traced, excluded)
        if key not in self._skeletons:
            if len(self._skeletons) >= _MAX_SKELETONS:
                self._skeletons.clear()
            self._skeletons[key] = self._skeleton(
                attribution, channel, restricted, traced, excluded
            )
        return self._skeletons[key]

    def _skeleton(
        self,
        attribution: Attribution,
        channel: str,
        restricted: bool,
        traced: bool,
        excluded: tuple[str, ...],
    ) -> Parts | None:
        """The tagged event cut at its per-event fields, the time taken out of the part
        after the kind; None if it cannot be cut cleanly."""
        names = ("event_id", "contact_id", "kind", "subject", "key_id", "fingerprint")
        markers = {name: _marker(name) for name in names}
        event, trace = _marker("event").encode(), _marker("traceparent")
        record = tagged_record(
            markers["event_id"], markers["contact_id"], channel, markers["kind"], _SOME_TIME,
            attribution, restricted, markers["subject"], markers["key_id"],
            markers["fingerprint"], event, trace if traced else None, excluded,
        )  # fmt: skip
        marks = [length_prefixed(markers[name].encode()) for name in names]
        marks.append(length_prefixed(event))
        if traced:
            marks.append(length_prefixed(trace.encode()))
        try:
            parts = _cut(self._serde.serialize(record, self._tagged), marks)
        except _Clash:
            return None
        time = timestamp_millis(_SOME_TIME)
        if not parts[3].startswith(time):  # occurred_at follows kind in the schema
            return None
        return (*parts[:3], parts[3][len(time) :], *parts[4:])


def tagged_record(
    event_id: str, contact_id: str, channel: str, kind: str, occurred_at: datetime,
    attribution: Attribution, restricted: bool, subject: str, key_id: str,
    source_fingerprint: str, sealed: bytes, traceparent: str | None,
    excluded_purposes: Sequence[str],
) -> dict[str, Any]:  # fmt: skip
    """A `TaggedContactEvent` record: the event's ids and time, its governance, and the
    sealed raw event."""
    return {
        "event_id": event_id,
        "contact_id": contact_id,
        "channel": channel,
        "kind": kind,
        "occurred_at": occurred_at,
        "governance": {
            "controller": attribution.controller,
            "processor": attribution.processor,
            "purpose": attribution.purpose,
            "legal_basis": attribution.legal_basis,
            "subject_pseudonym": subject,
            "policy_version": attribution.policy_version,
            "restricted": restricted,
            "retention_class": attribution.retention_class,
            "excluded_purposes": list(excluded_purposes),
        },
        "key_id": key_id,
        "source_fingerprint": source_fingerprint,
        "event": sealed,
        "traceparent": traceparent,
    }


def timestamp_millis(value: datetime) -> bytes:
    """How Avro (fastavro, AvroSerde) writes an aware datetime as timestamp-millis."""
    return zigzag_varint(millis_since_epoch(value))


def _marker(name: str) -> str:
    return f"\x00{name}-{secrets.token_hex(16)}\x00"


_SOME_TIME: Final = datetime(2001, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
_OTHER_TIME: Final = datetime(2002, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)


class _Clash(Exception):
    """A marker also occurs elsewhere in the encoded record."""


def _cut(encoded: bytes, marks: Sequence[bytes]) -> Parts:
    """`encoded` cut at each mark, which must occur exactly once, in this order."""
    parts = []
    rest = encoded
    for mark in marks:
        if encoded.count(mark) != 1:
            raise _Clash
        head, found, rest = rest.partition(mark)
        if not found:
            raise _Clash
        parts.append(head)
    parts.append(rest)
    return tuple(parts)


def facts_of(event: dict[str, Any], channel: str) -> dict[str, Any]:
    """The facts `TemplateEncoder.templates` reads, from a decoded channel event."""
    envelope = event["envelope"]
    return {
        "event_id": envelope["event_id"],
        "contact_id": envelope["contact_id"],
        "channel": channel,
        "kind": event["kind"],
        "occurred_at": envelope["occurred_at"],
        "client": envelope["client"],
        "service": envelope["service"],
        "purpose": envelope["purpose"],
    }
