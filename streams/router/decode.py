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
(`DecodeHelper`) while the main process keeps to Kafka, the ledger and the data keys. A
rejection names the stage and problem, never a value; a failure of the helper crosses over
as an exception type only.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, NamedTuple, cast

from processors.identity import Identifier, IdentifierKind, InvalidIdentifier
from processors.pii import PiiPath, compile_paths, rewrite_pii
from processors.policy import Policy
from processors.pseudonym import Pseudonymiser
from processors.routing import implausible_time, recording_of, subject_identifiers
from schemas.catalog import Contract, SchemaCatalog
from schemas.errors import MalformedPayload, SchemaMismatch, UnknownFingerprint
from schemas.serde import AvroSerde
from streams.router.dedup import content_digest
from streams.router.spans import SpanFinder
from streams.router.templates import (
    Decisions,
    TemplateEncoder,
    Templates,
    avro_varint,
    facts_of,
    fill,
)

Digests = tuple[tuple[str, str], ...]  # ((kind, digest), ...) of one event, in order
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_MAX_CACHED_SUBJECTS: Final = 100_000
_PIPE_BYTES: Final = 4 * 1024 * 1024


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


# -- the helper process ------------------------------------------------------------------------


class DecoderConfig(NamedTuple):
    """What a helper process needs to build its EventDecoder (sent once, at start)."""

    pseudonym_key: bytes
    policy: Policy
    channel_of: dict[str, str]
    expected: dict[str, str]
    max_event_bytes: int


class HelperFailed(RuntimeError):
    """The helper process failed; only the exception's type crosses over (no data)."""


class DecodeHelper:
    """A second process running an EventDecoder, so decoding overlaps the main process.

    Runs `serve()` in a new interpreter; requests and replies are pickles over its stdin
    and stdout, replies in the order of the requests. Several requests may be
    outstanding: the helper reads requests and writes replies in threads of its own, so
    the main process never blocks on a full pipe while the helper decodes, and the helper
    goes on to the next batch while the main process has not read a reply yet. The main
    process keeps the Kafka clients, the ledger and the data keys; the helper gets the raw
    bytes (which the router reads anyway) and the pseudonym key.
    """

    def __init__(self, config: DecoderConfig) -> None:
        source_root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": source_root + (os.pathsep + path if path else "")}
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from streams.router.decode import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._requests: IO[bytes] = self._process.stdin
        self._replies: IO[bytes] = self._process.stdout
        for pipe in (self._requests, self._replies):
            _widen(pipe)
        self._unread: deque[Pending] = deque()
        self._send(config)
        if self._receive() != _READY:
            raise HelperFailed("unexpected greeting")

    def submit(self, records: list[Request], now: datetime) -> Pending:
        """Queue a batch for decoding; its outcomes come with `Pending.result`."""
        pending = Pending(self)
        self._send((records, now))
        self._unread.append(pending)
        return pending

    def close(self) -> None:
        try:
            while self._unread:
                self._read_reply()
            self._send(None)
        except HelperFailed:
            pass  # it is gone already; wait() below reaps it
        finally:
            self._requests.close()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._replies.close()

    def _read_reply(self) -> None:
        """Read the next reply, for the oldest unread request."""
        reply = self._receive()
        self._unread.popleft().settle(reply)

    def _send(self, message: object) -> None:
        try:
            pickle.dump(message, self._requests, protocol=pickle.HIGHEST_PROTOCOL)
            self._requests.flush()
        except OSError:
            raise HelperFailed("the helper process is gone") from None

    def _receive(self) -> object:
        try:
            return pickle.load(self._replies)  # noqa: S301 - our own child, over its pipe
        except (EOFError, OSError, pickle.UnpicklingError):
            raise HelperFailed("the helper process is gone") from None


def _widen(pipe: IO[bytes]) -> None:
    """Let a pipe hold up to the system's limit for unprivileged users (1 MiB on Linux):
    most of a batch's reply is written while the main process is still routing the batch
    before it, instead of the helper blocking on a full 64 KiB pipe."""
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, min(limit, _PIPE_BYTES))
    except (OSError, ValueError, AttributeError):  # not Linux, or refused: keep the default
        pass


class Pending:
    """A batch submitted to the helper; `result()` waits for its outcomes."""

    def __init__(self, helper: DecodeHelper) -> None:
        self._helper = helper
        self._reply: object = None
        self._settled = False

    def settle(self, reply: object) -> None:
        self._reply, self._settled = reply, True

    def result(self) -> list[Outcome]:
        while not self._settled:
            self._helper._read_reply()
        if isinstance(self._reply, str):  # the helper failed: the exception's type
            raise HelperFailed(self._reply)
        return [_from_wire(item) for item in cast(list[tuple[Any, ...]], self._reply)]


# On the pipe, outcomes are plain tuples: unpickling named tuples costs three times more.
def _to_wire(outcome: Outcome) -> tuple[Any, ...]:
    if isinstance(outcome, Decoded) and outcome.templates is not None:
        return (*outcome[:-1], tuple(outcome.templates))
    return tuple(outcome)


def _from_wire(item: tuple[Any, ...]) -> Outcome:
    if len(item) == len(Rejection._fields):
        return Rejection._make(item)
    templates = item[-1]
    if templates is not None:
        return Decoded._make((*item[:-1], Templates._make(templates)))
    return Decoded._make(item)


_READY: Final = "ready"


def serve() -> None:
    """The helper process: a config, then (records, now) requests until None or EOF.

    A thread reads requests as they come and another writes replies, so the pipes never
    hold either process up; this thread decodes, one request after the other.
    """
    # Its life is the router's: it ends when the router closes the pipe (or dies), not on
    # the Ctrl-C or SIGTERM sent to the whole process group, which the router handles.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into the reply stream
    requests = sys.stdin.buffer
    config: DecoderConfig = pickle.load(requests)  # noqa: S301 - from our parent
    decoder = EventDecoder(
        SchemaCatalog.load(),
        Pseudonymiser(config.pseudonym_key),
        config.policy,
        config.channel_of,
        config.expected,
        config.max_event_bytes,
    )
    pickle.dump(_READY, replies)
    replies.flush()
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    reader = threading.Thread(target=_read_requests, args=(requests, inbox), daemon=True)
    writer = threading.Thread(target=_write_replies, args=(replies, outbox))
    reader.start()
    writer.start()
    while (request := inbox.get()) is not None:
        try:
            reply: object = [_to_wire(outcome) for outcome in decoder.decode_batch(*request)]
        except Exception as exc:  # noqa: BLE001 - reported by type only: no data crosses
            reply = type(exc).__name__
        outbox.put(reply)
    outbox.put(None)
    writer.join()


def _read_requests(requests: IO[bytes], inbox: queue.SimpleQueue[Any]) -> None:
    """Move requests from the pipe to `inbox`; None there when the router is done."""
    try:
        while (request := pickle.load(requests)) is not None:  # noqa: S301 - from our parent
            inbox.put(request)
    except (EOFError, OSError, pickle.UnpicklingError):
        pass  # the router closed the pipe or died: stop, as after its None
    inbox.put(None)


def _write_replies(replies: IO[bytes], outbox: queue.SimpleQueue[Any]) -> None:
    """Write `outbox`'s replies to the pipe, in order, until None."""
    try:
        while (reply := outbox.get()) is not None:
            pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
            replies.flush()
    except OSError:
        pass  # the router is gone; nobody reads the replies any more
