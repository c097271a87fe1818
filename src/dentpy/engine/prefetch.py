"""Draw the next training batches in a background thread while the device computes.

Cropping patches out of memory-mapped cases is I/O and memory copies (numpy releases the
GIL for both), so a worker thread can prepare batch n+1 while the network trains on batch
n. The wrapper keeps the sampler's contract: `next_batch()` returns exactly the batches the
sampler would have returned, in order, and `state_dict()` is the sampler state *before the
first batch not yet handed out*, so a checkpoint resumes exactly as without prefetching.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any


class _Stop:
    """Marks the end of the worker's output (it stopped, or it failed with `error`)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class PrefetchingSampler:
    """Wraps a sampler with `next_batch()`, `state_dict()`, `load_state_dict()` (and
    optionally `use_cases()`); `depth` batches are prepared ahead."""

    def __init__(self, sampler: Any, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.sampler = sampler
        self.depth = depth
        self._lock = threading.Lock()
        # Sampler states before each batch drawn but not yet handed out, oldest first.
        self._pending: deque[Any] = deque()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    if self._stop.is_set():
                        break
                    state = self.sampler.state_dict()
                    batch = self.sampler.next_batch()
                    self._pending.append(state)
                while not self._stop.is_set():
                    try:
                        self._queue.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as error:  # handed to the consumer, raised there
            self._queue.put(_Stop(error))
            return
        self._queue.put(_Stop())

    def _start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._work, name="dentpy-prefetch", daemon=True)
        self._thread.start()

    def _halt(self) -> None:
        """Stop the worker and rewind the sampler to the first batch not handed out."""
        if self._thread is not None:
            self._stop.set()
            while self._thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    self._queue.get(timeout=0.1)
            self._thread.join()
            self._thread = None
        self._queue = queue.Queue(maxsize=self.depth)
        if self._pending:
            self.sampler.load_state_dict(self._pending[0])
            self._pending.clear()

    # ------------------------------------------------------------------ sampler API
    def next_batch(self) -> Any:
        if self._thread is None:
            self._start()
        item = self._queue.get()
        if isinstance(item, _Stop):
            self._thread = None
            self._pending.clear()
            if item.error is not None:
                raise item.error
            raise RuntimeError("the prefetching worker stopped")
        with self._lock:
            self._pending.popleft()
        return item

    def state_dict(self) -> Any:
        with self._lock:
            return self._pending[0] if self._pending else self.sampler.state_dict()

    def load_state_dict(self, state: Any) -> None:
        self._halt()
        self.sampler.load_state_dict(state)

    def use_cases(self, cases: Sequence[Any]) -> None:
        """Change the sampler's pool from the next batch on (prefetched batches of the
        old pool are dropped and redrawn, as without prefetching)."""
        self._halt()
        self.sampler.use_cases(cases)

    def close(self) -> None:
        self._halt()

    def __getattr__(self, name: str) -> Any:
        # Everything else (cases, patch_size, ...) is the wrapped sampler's.
        return getattr(self.__dict__["sampler"], name)
