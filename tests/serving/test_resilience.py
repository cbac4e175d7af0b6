"""The breaker and the cache the services put in front of their dependencies."""

from __future__ import annotations

import asyncio
import time

import pytest

from serving.resilience import BreakerOpen, CircuitBreaker, TTLCache


def failing():
    raise ConnectionError("down")


def test_the_breaker_opens_after_consecutive_failures_and_closes_after_a_good_trial():
    breaker = CircuitBreaker("store", failures=2, reset_after_s=0.2)
    for _ in range(2):
        with pytest.raises(ConnectionError):  # the error that trips it reaches the caller
            breaker.call(failing)
    assert breaker.state == "open"
    calls = []
    with pytest.raises(BreakerOpen):
        breaker.call(lambda: calls.append(1))
    assert calls == []  # not called while open
    time.sleep(0.25)
    assert breaker.state == "half_open"  # readable before any call
    assert breaker.call(lambda: 7) == 7
    assert breaker.state == "closed"


def test_a_success_resets_the_count_of_failures():
    breaker = CircuitBreaker("store", failures=2, reset_after_s=60)
    with pytest.raises(ConnectionError):
        breaker.call(failing)
    breaker.call(lambda: None)
    with pytest.raises(ConnectionError):
        breaker.call(failing)
    assert breaker.state == "closed"


def test_a_timeout_in_the_worker_thread_counts_as_a_failure():
    breaker = CircuitBreaker("store", failures=1, reset_after_s=60)

    async def run():
        with pytest.raises(TimeoutError):
            await breaker.call_async(time.sleep, 0.3, timeout_s=0.05)
        with pytest.raises(BreakerOpen):
            await breaker.call_async(lambda: 1, timeout_s=1)

    asyncio.run(run())
    assert breaker.state == "open"


def test_the_cache_expires_entries_and_keeps_the_recently_used_ones():
    now = [0.0]
    cache = TTLCache(max_entries=2, ttl_s=5.0, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("c") == 3
    now[0] = 5.1
    assert cache.get("a") is None and cache.get("c") is None
    assert (cache.hits, cache.misses) == (2, 3)


def test_a_cache_without_room_or_lifetime_keeps_nothing():
    for cache in (TTLCache(max_entries=0), TTLCache(ttl_s=0)):
        cache.put("a", 1)
        assert cache.get("a") is None and len(cache) == 0
