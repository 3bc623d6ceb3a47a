"""The start-up heap freeze takes what exists out of the collector, and only that."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from streams.runtime.heap import OLDER_THRESHOLDS, YOUNG_THRESHOLD, freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def unfreeze_after() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("unfreeze_after")
def test_objects_alive_at_start_up_are_no_longer_walked_by_the_collector() -> None:
    started_with = _Node()
    frozen = freeze_startup_heap()
    assert frozen > 1000  # the interpreter's and the test suite's objects at least
    assert not any(o is started_with for o in gc.get_objects())
    created_later = _Node()
    assert any(o is created_later for o in gc.get_objects())


@pytest.mark.usefixtures("unfreeze_after")
def test_a_cycle_made_after_the_freeze_is_still_collected() -> None:
    freeze_startup_heap()
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    gc.collect()
    assert gone() is None


@pytest.mark.usefixtures("unfreeze_after")
def test_after_the_freeze_young_passes_come_less_often_and_cycles_still_go() -> None:
    gc.set_threshold(700, 10, 10)
    freeze_startup_heap()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    passes = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 0:
            passes.append(1)

    gc.collect()
    gc.callbacks.append(count)
    try:
        kept = [[] for _ in range(YOUNG_THRESHOLD // 2)]  # fewer new containers than the threshold
        assert not passes
        first, second = _Node(), _Node()
        first.other, second.other = second, first
        gone = weakref.ref(first)
        del first, second
        kept += [[] for _ in range(YOUNG_THRESHOLD)]  # past it: a young pass takes the cycle
        assert passes
        assert gone() is None
    finally:
        gc.callbacks.remove(count)
