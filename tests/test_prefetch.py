"""The prefetching sampler returns exactly the sampler's batches and checkpoints the
sampler as of the first batch not yet handed out."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from dentpy.engine.prefetch import PrefetchingSampler


class Counting:
    """A sampler whose batches are its draw numbers, slow enough for the worker to run
    ahead; `use_cases` changes an offset added to every batch."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.offset = 0
        self.calls = 0

    def next_batch(self) -> tuple[int, float]:
        time.sleep(0.002)
        self.calls += 1
        return self.offset, float(self.rng.random())

    def state_dict(self) -> dict[str, object]:
        return {"rng": self.rng.bit_generator.state, "offset": self.offset}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.rng.bit_generator.state = state["rng"]  # type: ignore[assignment]
        self.offset = int(state["offset"])  # type: ignore[arg-type]

    def use_cases(self, cases: list[int]) -> None:
        self.offset = len(cases)


def _draws(sampler: object, n: int) -> list[tuple[int, float]]:
    return [sampler.next_batch() for _ in range(n)]  # type: ignore[attr-defined]


def test_same_batches_in_the_same_order() -> None:
    plain = _draws(Counting(), 20)
    wrapped = PrefetchingSampler(Counting(), depth=3)
    try:
        assert _draws(wrapped, 20) == plain
    finally:
        wrapped.close()


def test_checkpoint_mid_stream_resumes_exactly() -> None:
    reference = _draws(Counting(), 12)
    wrapped = PrefetchingSampler(Counting(), depth=3)
    first = _draws(wrapped, 5)
    time.sleep(0.05)  # the worker has run ahead by `depth` batches
    assert wrapped.sampler.calls > 5
    state = wrapped.state_dict()
    wrapped.close()
    resumed = PrefetchingSampler(Counting(seed=99), depth=3)  # another seed: state decides
    resumed.load_state_dict(state)
    try:
        assert first + _draws(resumed, 7) == reference
    finally:
        resumed.close()


def test_load_state_rewinds_a_running_prefetcher() -> None:
    wrapped = PrefetchingSampler(Counting(), depth=2)
    try:
        _draws(wrapped, 3)
        state = wrapped.state_dict()
        ahead = _draws(wrapped, 4)
        wrapped.load_state_dict(state)  # e.g. the LR finder putting the stream back
        assert _draws(wrapped, 4) == ahead
    finally:
        wrapped.close()


def test_changing_the_pool_drops_batches_drawn_from_the_old_one() -> None:
    plain = Counting()
    expected = _draws(plain, 4)
    plain.use_cases([1, 2, 3])
    expected += _draws(plain, 4)
    wrapped = PrefetchingSampler(Counting(), depth=3)
    try:
        got = _draws(wrapped, 4)
        wrapped.use_cases([1, 2, 3])
        got += _draws(wrapped, 4)
    finally:
        wrapped.close()
    assert got == expected
    assert [offset for offset, _ in got] == [0] * 4 + [3] * 4


def test_a_failing_sampler_raises_in_the_training_thread_and_close_stops_the_worker() -> None:
    class Failing(Counting):
        def next_batch(self) -> tuple[int, float]:
            if self.calls == 2:
                raise OSError("cache file vanished")
            return super().next_batch()

    wrapped = PrefetchingSampler(Failing(), depth=2)
    _draws(wrapped, 2)
    with pytest.raises(OSError, match="cache file vanished"):
        wrapped.next_batch()
    wrapped.close()
    ok = PrefetchingSampler(Counting(), depth=2)
    _draws(ok, 2)
    ok.close()
    assert not any(t.name == "dentpy-prefetch" for t in threading.enumerate())
