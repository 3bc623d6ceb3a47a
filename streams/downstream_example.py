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
from streams.downstream import Answer, DownstreamConsumer, ReceivedCommand, ServeStats


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
) -> dict[str, ServeStats]:
    """Answer for several registered consumers in one process, one thread (and one
    consumer group) each, until all are idle for `max_idle_s`, one fails (its error is
    raised) or Ctrl-C; returns the stats by consumer name."""
    lock = Lock()

    def report(command: ReceivedCommand, answer: Answer) -> None:
        with lock:  # ids only: never the pseudonym or any other subject data
            say(f"{command.consumer} {command.command_id} {command.command} -> {answer.outcome}")

    consumers: list[DownstreamConsumer] = []
    try:
        for name in dict.fromkeys(names):  # each name once, in the order given
            consumers.append(DownstreamConsumer(container, name))
        with ThreadPoolExecutor(max_workers=max(1, len(consumers))) as pool:
            futures = {
                c.name: pool.submit(c.serve, example_answer, max_idle_s=max_idle_s,
                                    on_answered=report)
                for c in consumers
            }  # fmt: skip
            try:
                wait(futures.values(), return_when=FIRST_EXCEPTION)
            except KeyboardInterrupt:  # Ctrl-C: each finishes the batch in hand, then reports
                pass
            finally:  # one failed, all idle, or Ctrl-C: stop the others too
                for consumer in consumers:
                    consumer.stop()
            return {name: future.result() for name, future in futures.items()}
    finally:
        for consumer in consumers:
            consumer.close()
