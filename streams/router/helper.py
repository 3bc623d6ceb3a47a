"""The router's helper process: the decode stage (`streams.router.decode`) in a second
interpreter, so one router instance uses two cores.

Requests (a batch's topics and values, and the clock) and replies (one outcome per
record) are pickles over the helper's stdin and stdout, replies in the order of the
requests, each reply behind its length. A failure of the helper crosses over as an
exception type only: no data.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, NamedTuple, cast

from processors.policy import Policy
from processors.pseudonym import Pseudonymiser
from schemas.catalog import SchemaCatalog
from streams.router.decode import Decoded, EventDecoder, Outcome, Rejection, Request
from streams.router.templates import Templates
from streams.runtime.heap import freeze_startup_heap


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
    outstanding: the helper reads requests and writes replies in threads of its own, and
    a thread here reads the replies as they come, so neither process blocks on a full
    pipe, and the helper goes on to the next batch while the main process routes. The main
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
        for pipe in (self._process.stdin, self._process.stdout):
            _widen(pipe)
        self._unread: deque[Pending] = deque()
        # Replies are taken off the pipe as the helper writes them, by a thread of this
        # process: the helper never waits for the router to ask for a reply, and asking
        # for one that has come costs only its unpickling.
        self._arrived: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
        self._reader = threading.Thread(
            target=_read_replies,
            args=(self._process.stdout, self._arrived),
            name="router-helper-replies",
            daemon=True,
        )
        self._reader.start()
        self._send(config)
        if self._receive() != _READY:
            raise HelperFailed("unexpected greeting")

    @property
    def replies_waiting(self) -> int:
        """Replies read off the pipe that no `Pending.result` has taken yet (plus one, the
        end mark, once the helper is gone)."""
        return self._arrived.qsize()

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
            # What a dead helper did not read stays unsent: nobody needs it.
            with contextlib.suppress(OSError):
                self._requests.close()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._reader.join()  # the helper is gone: its stdout is at its end

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
        reply = self._arrived.get()
        if reply is None:
            self._arrived.put(None)  # every later wait learns it too
            raise HelperFailed("the helper process is gone")
        try:
            return pickle.loads(reply)  # noqa: S301 - our own child, over its pipe
        except pickle.UnpicklingError:
            raise HelperFailed("the helper process sent a broken reply") from None


def _widen(pipe: IO[bytes]) -> None:
    """Let the pipe hold 1 MiB (Linux), not 64 KiB: a batch's request then goes in a write
    or two while the helper is busy. Where it cannot, the default size serves."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or over the user's limit
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _read_replies(replies: IO[bytes], arrived: queue.SimpleQueue[bytearray | None]) -> None:
    """Move each reply (its length, then its bytes) from the pipe to `arrived`; None
    there once the pipe ends or breaks. The reads release the GIL while they wait."""
    raw = cast(Any, replies).raw
    try:
        while True:
            header = _read_exactly(raw, _LENGTH.size)
            if header is None:
                break
            (length,) = _LENGTH.unpack(header)
            reply = _read_exactly(raw, length)
            if reply is None:
                break
            arrived.put(reply)
    except OSError:
        pass  # the helper died: the waits below learn it from None
    finally:
        replies.close()
        arrived.put(None)


def _read_exactly(raw: Any, length: int) -> bytearray | None:
    """`length` bytes from `raw`, or None if it ends first."""
    buffer = bytearray(length)
    view = memoryview(buffer)
    filled = 0
    while filled < length:
        count = raw.readinto(view[filled:])
        if not count:
            return None
        filled += count
    return buffer


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
_LENGTH: Final = struct.Struct("<Q")  # a reply's length, before its bytes
_PIPE_BYTES: Final = 1 << 20


def serve() -> None:
    """The helper process: a config, then (records, now) requests until None or EOF.

    A thread reads requests as they come and another writes replies, so the pipes never
    hold either process up; this thread decodes and pickles, one request after the other.
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
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    reader = threading.Thread(target=_read_requests, args=(requests, inbox), daemon=True)
    writer = threading.Thread(target=_write_replies, args=(replies, outbox))
    reader.start()
    writer.start()
    outbox.put(pickle.dumps(_READY))
    while (request := inbox.get()) is not None:
        try:
            reply: object = [_to_wire(outcome) for outcome in decoder.decode_batch(*request)]
        except Exception as exc:  # noqa: BLE001 - reported by type only: no data crosses
            reply = type(exc).__name__
        # Pickled here, not in the writer: two threads pickling and decoding at once share
        # the GIL in 5 ms slices, and the reply the router waits for came out later.
        outbox.put(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
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


def _write_replies(replies: IO[bytes], outbox: queue.SimpleQueue[bytes | None]) -> None:
    """Write `outbox`'s pickled replies to the pipe, each behind its length, in order,
    until None.

    A reply (about 1.8 MB for 2,000 events) is pickled whole, then written: pickled
    straight into the pipe, it went only as fast as the router read it, and the router
    waited for the pickling too. The router's reader thread takes it off the pipe as it
    comes, and the write releases the GIL, so the decoding thread goes on meanwhile."""
    try:
        while (reply := outbox.get()) is not None:
            replies.write(_LENGTH.pack(len(reply)))
            replies.write(reply)
            replies.flush()
    except OSError:
        pass  # the router is gone; nobody reads the replies any more
