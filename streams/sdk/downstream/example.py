"""The reference downstream consumer: copy this to connect a system to privacy commands.

The contract, in short:
- Idempotency: the same `command_id` can arrive more than once (a re-send has a higher
  `attempt`; a crash before the commit repeats it). Apply it so that doing it twice is the
  same as doing it once, and answer every time: the privacy app takes a repeated answer as
  the same answer.
- Deadline: answer before `command.answer_by` (the registry's `answer_within`); a silent
  consumer is sent the command again, then escalated to the DPO.
- Outcomes: `done` (carried out), `not_found` (you hold nothing on this subject),
  `retained_under_hold` (the data is kept under a legal hold, GDPR Art. 17(3)(e): keep it,
  restricted), `failed` with a reason (a person looks at it; never put personal data in
  the reason). Raising from the handler answers `failed` with the exception's type name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from threading import Lock

from streams.bootstrap import Container
from streams.runtime.watchdog import CallWatchdog, Stuck
from streams.sdk.downstream.client import Answer, DownstreamConsumer, ReceivedCommand, ServeStats
from streams.sdk.downstream.wire import unguarded


def example_answer(command: ReceivedCommand) -> Answer:
    """What a consumer holding no data of its own would answer; replace with real work."""
    if command.command == "erase" and command.held_recordings:
        # Erase everything else, keep the held recordings (restricted), and say so.
        return Answer("retained_under_hold", "kept under legal hold")
    # erase / restrict / lift_restriction / rectify / suppress / stop_purpose: carried out.
    return Answer("done")


def serve_registered(
    container: Container,
    names: Iterable[str],
    *,
    max_idle_s: float | None,
    say: Callable[[str], None],
    on_stuck: Stuck | None = None,
    on_started: Callable[[list[DownstreamConsumer]], None] | None = None,
) -> dict[str, ServeStats]:
    """Answer for several registered consumers in one process, one thread (and one
    consumer group) each, until all are idle for `max_idle_s`, one fails (its error is
    raised) or Ctrl-C; returns the stats by consumer name.

    A broker that goes away is waited for (one warning line per 30 s for the process);
    with `on_stuck`, each thread's Kafka calls run under a watchdog of its own, which
    calls it for a call blocked past its timeout (`restart_in_place` for the CLI).
    `on_started` gets the consumers once they exist (the CLI's health checks watch them)."""
    lock = Lock()

    def report(command: ReceivedCommand, answer: Answer) -> None:
        with lock:  # ids only: never the pseudonym or any other subject data
            say(f"{command.consumer} {command.command_id} {command.command} -> {answer.outcome}")

    def serve(consumer: DownstreamConsumer, watchdog: CallWatchdog | None) -> ServeStats:
        if watchdog is not None:
            watchdog.start()  # from this thread: it watches this thread's calls only
        try:
            return consumer.serve(example_answer, max_idle_s=max_idle_s, on_answered=report)
        finally:
            if watchdog is not None:
                watchdog.close()

    consumers: list[DownstreamConsumer] = []
    watchdogs: dict[str, CallWatchdog | None] = {}
    try:
        for name in dict.fromkeys(names):  # each name once, in the order given
            watchdog = watchdogs[name] = CallWatchdog(on_stuck) if on_stuck else None
            guard = watchdog.guard if watchdog is not None else unguarded
            consumers.append(DownstreamConsumer(container, name, guard=guard))
        if on_started is not None:
            on_started(consumers)
        with ThreadPoolExecutor(max_workers=max(1, len(consumers))) as pool:
            futures = {c.name: pool.submit(serve, c, watchdogs[c.name]) for c in consumers}
            try:
                wait(futures.values(), return_when=FIRST_EXCEPTION)
            except KeyboardInterrupt:  # Ctrl-C: each finishes the batch in hand, then reports
                pass
            finally:  # one failed, all idle, or Ctrl-C: stop the others too
                for consumer in consumers:
                    consumer.stop()
            return {name: future.result() for name, future in futures.items()}
    finally:  # side by side: with the broker away, each close waits a little
        with ThreadPoolExecutor(max_workers=max(1, len(consumers))) as closing:
            list(closing.map(DownstreamConsumer.close, consumers))
