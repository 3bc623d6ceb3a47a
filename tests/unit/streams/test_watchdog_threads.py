"""The call watchdog with guarded calls in two threads at once.

The router's commit thread guards its Kafka commit while the routing thread may guard a
call of its own. The end of one guarded call must not unguard the other: a commit that
blocks is still reported, whatever the other thread did meanwhile.
"""

from __future__ import annotations

import threading

from streams.runtime.watchdog import CallWatchdog


def test_a_call_blocked_in_one_thread_is_reported_after_another_thread_s_call_ends() -> None:
    stuck: list[str] = []
    reported = threading.Event()

    def on_stuck(name: str, _blocked_s: float) -> None:
        stuck.append(name)
        reported.set()

    watchdog = CallWatchdog(on_stuck, grace_s=0.0, interval_s=0.01)
    entered, release = threading.Event(), threading.Event()

    def commit_thread() -> None:
        with watchdog.guard("commit_transaction", 0.2):
            entered.set()
            release.wait(10)  # blocked, as a commit waiting for a broker that hangs

    thread = threading.Thread(target=commit_thread)
    watchdog.start()
    try:
        with watchdog.guard("seed the dedup window", 60):
            thread.start()
            assert entered.wait(5)
        # the routing thread's call ended; the commit thread's is still blocked
        assert reported.wait(5), "the blocked commit was never reported"
        assert stuck == ["commit_transaction"]
    finally:
        release.set()
        thread.join(5)
        watchdog.close()
