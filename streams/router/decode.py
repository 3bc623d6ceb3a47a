"""The router's first stage: a raw record's bytes in, the facts the router needs out.

`EventDecoder.decode_batch` decodes and validates each raw event, normalises and digests its
subject's identifiers, and prepares what the main process will write:

- the sealed event, as the event's bytes cut around its personal-data values
  (`Decoded.chunks`, `Decoded.pii`): `seal` encrypts the values and joins them in, which
  gives the bytes that re-encoding the record with encrypted fields would give. The cuts
  are found in the bytes as received (`streams.router.spans`), or, for bytes not in
  canonical form, in the event encoded again;
- its retention input and hold signal (`streams.router.templates`), which only lack the
  subject's pseudonym.

Everything here is a function of the record's topic and bytes (and the clock and the
policy), with no key but the pseudonym key: it runs in the router's helper process
(`streams.router.helper`) while the main process keeps to Kafka, the ledger and the data
keys. A rejection names the stage and problem, never a value.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

from processors.identity import Identifier, IdentifierKind, InvalidIdentifier
from processors.pii import PiiPath, compile_paths, rewrite_pii
from processors.policy import Decisions, Policy
from processors.pseudonym import Pseudonymiser
from processors.routing import implausible_time, recording_of, subject_identifiers
from schemas.catalog import Contract, SchemaCatalog
from schemas.errors import MalformedPayload, SchemaMismatch, UnknownFingerprint
from schemas.serde import AvroSerde
from streams.router.dedup import content_digest
from streams.router.spans import SpanFinder
from streams.router.templates import (
    TemplateEncoder,
    Templates,
    avro_varint,
    facts_of,
    fill,
)

Digests = tuple[tuple[str, str], ...]  # ((kind, digest), ...) of one event, in order
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAX_CACHED_SUBJECTS: Final = 100_000


class Rejection(NamedTuple):
    """Why an input goes to the dead-letter topic; the reason never quotes a value."""

    stage: str
    code: str
    reason: str


class Decoded(NamedTuple):
    """A valid raw event, reduced to what routing, tagging and sealing need."""

    event_id: str
    contact_id: str
    occurred_at: datetime
    client: str
    service: str
    purpose: str
    kind: str
    fingerprint_hex: str
    digests: Digests
    content: bytes  # dedup digest of the raw bytes
    chunks: tuple[bytes, ...]  # the sealed event around its PII values
    pii: tuple[tuple[str, str], ...]  # (path, plaintext), in the order of the chunks
    templates: Templates | None  # retention input and hold signal; None: no policy rule


Outcome = Decoded | Rejection
Request = tuple[str, bytes | None]  # (topic, value)


class _Rejected(Exception):
    def __init__(self, stage: str, code: str, reason: str) -> None:
        super().__init__(reason)
        self.rejection = Rejection(stage, code, reason)


class _Rules(NamedTuple):
    pii: tuple[PiiPath, ...]
    spans: SpanFinder
    branch_of_kind: dict[str, str]
    bounds: dict[str, list[tuple[str, int | float | None, int | float | None]]]


def seal(decoded: Decoded, encrypt: Callable[[Sequence[tuple[str, str]]], list[bytes]]) -> bytes:
    """The event's bytes with its PII values replaced by `encrypt(pii)`: one token (bytes)
    per (path, value), in order (`FieldCipher.encrypt_fields`)."""
    if not decoded.pii:
        return decoded.chunks[0]
    return fill(decoded.chunks, encrypt(decoded.pii))


class EventDecoder:
    """Decodes, validates and digests raw events of the channel topics it is given."""

    def __init__(
        self,
        schemas: SchemaCatalog,
        pseudonymiser: Pseudonymiser,
        policy: Policy,
        channel_of: Mapping[str, str],
        expected: Mapping[str, str],
        max_event_bytes: int,
    ) -> None:
        self._serde = AvroSerde(schemas)
        self._templates = TemplateEncoder(schemas, self._serde, Decisions(policy))
        self._pseudonymiser = pseudonymiser
        self._channel_of = dict(channel_of)
        self._expected = dict(expected)
        self._max_bytes = max_event_bytes
        self._rules: dict[bytes, _Rules] = {}
        self._digests: dict[tuple[Any, ...], Digests | InvalidIdentifier] = {}
        # Stands for each PII value while the sealed event is encoded: random, and replaced
        # by another if an event's text happens to contain it (`_seal_plan`).
        self._sentinel = ""
        self._marker = b""
        self._new_sentinel()

    @property
    def serde(self) -> AvroSerde:
        return self._serde

    def decode_batch(self, records: Sequence[Request], now: datetime) -> list[Outcome]:
        """One outcome per (topic, value), in order."""
        outcomes: list[Outcome] = []
        for topic, value in records:
            try:
                outcomes.append(self._decode(topic, value, now))
            except _Rejected as rejected:
                outcomes.append(rejected.rejection)
        return outcomes

    def _decode(self, topic: str, value: bytes | None, now: datetime) -> Decoded:
        if value is None:
            raise _Rejected("decode", "no_value", "record has no value")
        if len(value) > self._max_bytes:
            raise _Rejected(
                "decode", "oversized", f"{len(value)} bytes exceeds the {self._max_bytes} limit"
            )
        try:
            contract, record = self._serde.deserialize(value)
        except UnknownFingerprint:
            raise _Rejected(
                "decode", "unknown_fingerprint", "no contract has this fingerprint"
            ) from None
        except (MalformedPayload, SchemaMismatch) as exc:
            raise _Rejected("decode", "malformed", str(exc)) from None
        if contract.name != self._expected.get(topic):
            raise _Rejected(
                "validate", "wrong_contract", f"{contract.label} is not the contract of this topic"
            )
        rules = self._rules_of(contract)
        _check_payload(record, rules)
        envelope = record["envelope"]
        event_id, contact_id = envelope["event_id"], envelope["contact_id"]
        if not _is_uuid(event_id) or not contact_id.strip():
            raise _Rejected(
                "validate", "bad_id", "envelope.event_id or envelope.contact_id is invalid"
            )
        problem = implausible_time(envelope["occurred_at"], now)
        if problem:
            raise _Rejected("validate", "implausible_time", f"envelope.{problem}")
        digests = self._subject_digests(envelope["subject"], contact_id)
        kind = record["kind"]
        recording = recording_of(kind, record["payload"], envelope["occurred_at"])
        facts = facts_of(record, self._channel_of.get(topic, "unknown"))
        templates = self._templates.templates(facts, recording)
        chunks, pii = self._seal_plan(value, record, contract, rules)
        return Decoded(
            event_id, contact_id, envelope["occurred_at"], envelope["client"],
            envelope["service"], envelope["purpose"], kind, contract.fingerprint_hex, digests,
            content_digest(value), chunks, pii, templates,
        )  # fmt: skip

    def _subject_digests(self, subject: dict[str, Any], contact_id: str) -> Digests:
        """Digests of the subject's normalised identifiers (the contact's if it names none).

        Remembered per spelling of the subject's identifiers: repeat callers skip the
        normalisation and the HMACs. A refused identifier is refused again the same way.
        """
        handle = subject.get("social_handle")
        key = (
            subject.get("phone"), subject.get("email"),
            None if handle is None else (handle["platform"], handle["handle"]),
            subject.get("customer_ref"),
        )  # fmt: skip
        known = self._digests.get(key)
        if known is None:
            try:
                identifiers = subject_identifiers(subject)
            except InvalidIdentifier as exc:
                known = exc
            else:
                known = tuple(
                    (i.kind.value, self._pseudonymiser.identifier_digest(i)) for i in identifiers
                )
            if len(self._digests) >= _MAX_CACHED_SUBJECTS:
                self._digests.clear()
            self._digests[key] = known
        if isinstance(known, InvalidIdentifier):
            raise _Rejected("pseudonymise", f"invalid_{known.kind.value}", str(known)) from None
        if known:
            return known
        contact = Identifier(IdentifierKind.CONTACT, contact_id)
        return ((contact.kind.value, self._pseudonymiser.identifier_digest(contact)),)

    def _seal_plan(
        self, value: bytes, record: dict[str, Any], contract: Contract, rules: _Rules
    ) -> tuple[tuple[bytes, ...], tuple[tuple[str, str], ...]]:
        """The event's bytes cut around its PII values, and those values with their paths.

        Cut where `SpanFinder` finds them in the bytes as received; for bytes it does not
        vouch for, the record is encoded again with a marker for each value, and cut there.
        """
        spans = rules.spans.spans(value)
        if spans is not None:
            chunks, values, position = [], [], 0
            for start, data, end, path in spans:
                chunks.append(value[position:start])
                values.append((path, value[data:end].decode()))
                position = end
            chunks.append(value[position:])
            return tuple(chunks), tuple(values)
        return self._reencoded_plan(record, contract, rules)

    def _reencoded_plan(
        self, record: dict[str, Any], contract: Contract, rules: _Rules
    ) -> tuple[tuple[bytes, ...], tuple[tuple[str, str], ...]]:
        values: list[tuple[str, str]] = []

        def collect(path: str, value: str) -> str:
            values.append((path, value))
            return self._sentinel

        rewrite_pii(record, rules.pii, collect)
        for _ in range(3):
            chunks = tuple(self._serde.serialize(record, contract).split(self._marker))
            if len(chunks) == len(values) + 1:
                return chunks, tuple(values)
            # The text contains the marker itself: put the values back, pick another one.
            rewrite_pii(record, rules.pii, _putting_back([value for _, value in values]))
            self._new_sentinel()
            rewrite_pii(record, rules.pii, lambda _path, _value: self._sentinel)
        raise RuntimeError("no field marker absent from the event text")

    def _new_sentinel(self) -> None:
        self._sentinel = f"\x00pii-{secrets.token_hex(16)}\x00"
        encoded = self._sentinel.encode()
        self._marker = avro_varint(len(encoded)) + encoded

    def _rules_of(self, contract: Contract) -> _Rules:
        rules = self._rules.get(contract.fingerprint)
        if rules is None:
            branch_of_kind: dict[str, str] = {}
            bounds: dict[str, list[tuple[str, int | float | None, int | float | None]]] = {}
            payload = next(f for f in contract.definition["fields"] if f["name"] == "payload")
            for branch in payload["type"]:
                name = (
                    branch["name"]
                    if "." in branch["name"]
                    else f"{contract.name.rsplit('.', 1)[0]}.{branch['name']}"
                )
                branch_of_kind.update(dict.fromkeys(branch.get("kinds", ()), name))
                bounds[name] = [
                    (f["name"], f.get("minimum"), f.get("maximum"))
                    for f in branch["fields"]
                    if "minimum" in f or "maximum" in f
                ]
            rules = _Rules(
                compile_paths(contract.pii_fields), SpanFinder(contract), branch_of_kind, bounds
            )
            self._rules[contract.fingerprint] = rules
        return rules


def _putting_back(values: list[str]) -> Callable[[str, str], str]:
    """A rewrite giving back `values` in order (the values a rewrite took out)."""
    remaining = iter(values)
    return lambda _path, _value: next(remaining)


def _check_payload(record: dict[str, Any], rules: _Rules) -> None:
    payload = record["payload"]
    if isinstance(payload, tuple):
        branch, body = payload
    else:  # a union of one record decodes to the record itself
        branch, body = next(iter(rules.bounds)), payload
    if rules.branch_of_kind.get(record["kind"]) != branch:
        raise _Rejected("validate", "kind_mismatch", "payload does not agree with kind")
    for name, low, high in rules.bounds.get(branch, ()):
        value = body.get(name)
        if value is not None and (
            (low is not None and value < low) or (high is not None and value > high)
        ):
            raise _Rejected("validate", "out_of_range", f"payload.{name} is out of range")


def _is_uuid(text: str) -> bool:
    if _UUID.fullmatch(text):  # the canonical form; uuid.UUID judges every other spelling
        return True
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
