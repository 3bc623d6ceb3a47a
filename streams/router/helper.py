"""The router's helper process: the decode stage (`streams.router.decode`) in a second
interpreter, so one router instance uses two cores.

Two kinds of request, each with one reply, in the order of the requests, pickled over the
helper's stdin and stdout:
- decode a batch (its topics and values, and the clock): one outcome per record. The
  cuts and personal values of each event to seal stay here, under the batch's number;
  the outcome says how long the sealed event will be (`Decoded.sealed_size`);
- seal a batch's events (`SealRequest`), once the router has resolved their subjects:
  the data key of each, for this request only, and the sealed events back, in order.
So the router never encrypts, and the helper holds a data key only while it seals. A
failure of the helper crosses over as an exception type only: no data.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, Generic, NamedTuple, TypeVar

from processors.crypto import FieldCipher
from processors.policy import Policy
from processors.pseudonym import Pseudonymiser
from schemas.catalog import SchemaCatalog
from streams.router.decode import (
    Decoded,
    EventDecoder,
    Outcome,
    Rejection,
    Request,
    sealed_length,
)
from streams.router.templates import Templates, fill
from streams.runtime.heap import freeze_startup_heap

T = TypeVar("T")
# Batches whose events the helper holds for sealing: the router has at most four in flight
# (decoded ahead, routed); those it dropped (an abort) go when a later batch is sealed.
_MAX_HELD_BATCHES: Final = 16


class DecoderConfig(NamedTuple):
    """What a helper process needs to build its EventDecoder (sent once, at start)."""

    pseudonym_key: bytes
    policy: Policy
    channel_of: dict[str, str]
    expected: dict[str, str]
    max_event_bytes: int


class HelperFailed(RuntimeError):
    """The helper process failed; only the exception's type crosses over (no data)."""


class _Decode(NamedTuple):
    batch: int  # numbered by the router, in order
    records: list[Request]
    now: datetime


class SealRequest(NamedTuple):
    """Seal events of a decoded batch: each under its subject's key, for this request only."""

    batch: int  # `Pending.batch` of its decoding
    keys: dict[str, bytes]  # key id -> data key
    events: list[tuple[int, str]]  # (index in the batch, key id): the reply's order


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
            [sys.executable, "-c", "from streams.router.helper import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._requests: IO[bytes] = self._process.stdin
        self._replies: IO[bytes] = self._process.stdout
        self._unread: deque[Pending[Any]] = deque()
        self._batches = 0
        self._send(config)
        if self._receive() != _READY:
            raise HelperFailed("unexpected greeting")

    def submit(self, records: list[Request], now: datetime) -> Pending[list[Outcome]]:
        """Queue a batch for decoding; its outcomes come with `Pending.result`."""
        self._batches += 1
        pending = Pending(self, _outcomes, self._batches)
        self._send(_Decode(self._batches, records, now))
        self._unread.append(pending)
        return pending

    def seal(self, request: SealRequest) -> Pending[list[bytes]]:
        """Queue the sealing of a decoded batch's events; the sealed events (in the order of
        `request.events`) come with `Pending.result`."""
        pending = Pending(self, _sealed, request.batch)
        self._send(request)
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


class Pending(Generic[T]):
    """A request to the helper; `result()` waits for its reply. `batch`: the batch's number."""

    def __init__(self, helper: DecodeHelper, convert: Callable[[Any], T], batch: int) -> None:
        self._helper = helper
        self._convert = convert
        self.batch = batch
        self._reply: object = None
        self._settled = False

    def settle(self, reply: object) -> None:
        self._reply, self._settled = reply, True

    def result(self) -> T:
        while not self._settled:
            self._helper._read_reply()
        if isinstance(self._reply, str):  # the helper failed: the exception's type
            raise HelperFailed(self._reply)
        return self._convert(self._reply)


def _outcomes(reply: list[tuple[Any, ...]]) -> list[Outcome]:
    return [_from_wire(item) for item in reply]


def _sealed(reply: list[bytes]) -> list[bytes]:
    return reply


# On the pipe, outcomes are plain tuples: unpickling named tuples costs three times more.
def _to_wire(outcome: Outcome) -> tuple[Any, ...]:
    if isinstance(outcome, Decoded) and outcome.templates is not None:
        return (*outcome[:-1], tuple(outcome.templates))
    return tuple(outcome)


_CHUNKS: Final = Decoded._fields.index("chunks")


def _held_to_wire(decoded: Decoded) -> tuple[Any, ...]:
    """A decoded event whose chunks and values stay in the helper: without them, with the
    length of the sealed event instead."""
    size = sealed_length(decoded.chunks, decoded.pii)
    templates = decoded.templates
    return (*decoded[:_CHUNKS], (), (), size, None if templates is None else tuple(templates))


def _from_wire(item: tuple[Any, ...]) -> Outcome:
    if len(item) == len(Rejection._fields):
        return Rejection._make(item)
    templates = item[-1]
    if templates is not None:
        return Decoded._make((*item[:-1], Templates._make(templates)))
    return Decoded._make(item)


_READY: Final = "ready"
# batch number -> {index in the batch: (chunks, PII)} of the events the helper will seal
_Held = dict[int, dict[int, tuple[tuple[bytes, ...], tuple[tuple[str, str], ...]]]]


def serve() -> None:
    """The helper process: a config, then decode and seal requests until None or EOF.

    A thread reads requests as they come and another writes replies, so the pipes never
    hold either process up; this thread decodes and seals, one request after the other.
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
    freeze_startup_heap()
    pickle.dump(_READY, replies)
    replies.flush()
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    reader = threading.Thread(target=_read_requests, args=(requests, inbox), daemon=True)
    writer = threading.Thread(target=_write_replies, args=(replies, outbox))
    reader.start()
    writer.start()
    held: _Held = {}
    while (request := inbox.get()) is not None:
        try:
            if isinstance(request, SealRequest):
                reply: object = _seal(held, request)
            else:
                reply = _decode(decoder, held, request)
        except Exception as exc:  # noqa: BLE001 - reported by type only: no data crosses
            reply = type(exc).__name__
        outbox.put(reply)
    outbox.put(None)
    writer.join()


def _decode(decoder: EventDecoder, held: _Held, request: _Decode) -> list[tuple[Any, ...]]:
    """The batch's outcomes; the cuts and values of its events to seal are kept in `held`."""
    kept = {}
    reply = []
    for index, outcome in enumerate(decoder.decode_batch(request.records, request.now)):
        if isinstance(outcome, Decoded) and outcome.pii:
            kept[index] = (outcome.chunks, outcome.pii)
            reply.append(_held_to_wire(outcome))
        else:
            reply.append(_to_wire(outcome))
    held[request.batch] = kept
    while len(held) > _MAX_HELD_BATCHES:
        del held[next(iter(held))]
    return reply


def _seal(held: _Held, request: SealRequest) -> list[bytes]:
    """The requested events sealed, in order; the batch (and any dropped before it) let go."""
    events = held.pop(request.batch)
    for older in [batch for batch in held if batch < request.batch]:
        del held[older]  # batches the router dropped (an abort): never to be sealed
    ciphers = {key_id: FieldCipher(key_id, key) for key_id, key in request.keys.items()}
    sealed = []
    for index, key_id in request.events:
        chunks, pii = events[index]
        sealed.append(fill(chunks, ciphers[key_id].encrypt_fields(pii)))
    return sealed


def _read_requests(requests: IO[bytes], inbox: queue.SimpleQueue[Any]) -> None:
    """Move requests from the pipe to `inbox`; None there when the router is done."""
    try:
        while (request := pickle.load(requests)) is not None:  # noqa: S301 - from our parent
            inbox.put(request)
    except (EOFError, OSError, pickle.UnpicklingError):
        pass  # the router closed the pipe or died: stop, as after its None
    inbox.put(None)


def _write_replies(replies: IO[bytes], outbox: queue.SimpleQueue[Any]) -> None:
    """Write `outbox`'s replies to the pipe, in order, until None.

    A reply (about 1.7 MB for 2,000 events) is pickled whole, then written, so it is
    pickled while the router is still routing an earlier batch. Pickled straight into the
    64 KB pipe, it went only as fast as the router read it, and the router waited for the
    pickling too (its wait for replies halved when this changed)."""
    try:
        while (reply := outbox.get()) is not None:
            replies.write(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
            replies.flush()
    except OSError:
        pass  # the router is gone; nobody reads the replies any more
