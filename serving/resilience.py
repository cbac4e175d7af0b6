"""Circuit breaker, TTL cache and timeouts: what keeps a failing dependency from becoming a 5xx."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from typing import Any, Literal

State = Literal["closed", "open", "half_open"]


class BreakerOpen(RuntimeError):
    """The breaker is open: the dependency is not called until ``reset_after_s`` has passed."""


class CircuitBreaker:
    """Stops calling a dependency after ``failures`` consecutive errors.

    Closed: every call goes through. After ``failures`` errors in a row it opens and calls
    fail at once with ``BreakerOpen`` (no network round trip, no timeout to wait out). After
    ``reset_after_s`` one trial call is let through (half open): success closes it, failure
    opens it again for another period.
    """

    def __init__(
        self,
        name: str,
        failures: int = 3,
        reset_after_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name = name
        self.failures = failures
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._errors = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> State:
        with self._lock:
            return self._state()

    def _state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_after_s:
            return "half_open"
        return "open"

    def before(self) -> None:
        """Raise ``BreakerOpen`` unless a call may go through now."""
        with self._lock:
            state = self._state()
            if state == "open" or (state == "half_open" and self._trial):
                raise BreakerOpen(f"{self.name} is failing; not called for {self.reset_after_s:g} s")
            if state == "half_open":
                self._trial = True

    def success(self) -> None:
        with self._lock:
            self._errors, self._opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self._errors += 1
            self._trial = False
            if self._opened_at is not None or self._errors >= self.failures:
                self._opened_at = self._clock()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args)`` through the breaker; any exception counts as a failure and is re-raised."""
        self.before()
        try:
            out = fn(*args, **kwargs)
        except BaseException:
            self.failure()
            raise
        self.success()
        return out

    async def call_async(
        self, fn: Callable[..., Any], *args: Any, timeout_s: float, executor: Executor | None = None
    ) -> Any:
        """``fn(*args)`` in a worker thread with a timeout; a timeout counts as a failure."""
        self.before()
        try:
            out = await in_thread(fn, *args, timeout_s=timeout_s, executor=executor)
        except BaseException:
            self.failure()
            raise
        self.success()
        return out


async def in_thread(
    fn: Callable[..., Any], *args: Any, timeout_s: float, executor: Executor | None = None
) -> Any:
    """Run blocking ``fn`` in ``executor`` (default: the loop's); ``TimeoutError`` after ``timeout_s``.

    The thread cannot be killed: a timed-out call finishes in the background and its result
    is dropped, which is what a request that already got its fallback wants.
    """
    loop = asyncio.get_running_loop()
    return await asyncio.wait_for(loop.run_in_executor(executor, lambda: fn(*args)), timeout_s)


class TTLCache:
    """A small LRU map whose entries expire ``ttl_s`` after they were written (thread-safe)."""

    def __init__(
        self, max_entries: int = 10_000, ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ):
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._data: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None or entry[0] < self._clock():
                if entry is not None:
                    del self._data[key]
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: Hashable, value: Any) -> None:
        if self.max_entries <= 0 or self.ttl_s <= 0:
            return
        with self._lock:
            self._data[key] = (self._clock() + self.ttl_s, value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
