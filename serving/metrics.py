"""Prometheus figures the services add to BentoML's own request metrics on ``/metrics``.

BentoML already exports request counts, latency histograms and in-flight requests per
endpoint; these say why answers were degraded. They are plain prometheus_client metrics
(``bentoml.metrics`` is deprecated): under ``bentoml serve`` PROMETHEUS_MULTIPROC_DIR is set,
so every worker's values are summed by BentoML's ``/metrics``. Created on first use.
"""

from __future__ import annotations

import functools


@functools.cache
def _metrics() -> dict:
    from prometheus_client import Counter, Gauge

    return {
        "fallback": Counter(
            "shopml_fallbacks",
            "Answers served by a fallback instead of the model, by reason",
            ["service", "reason"],
        ),
        "cache": Counter(
            "shopml_cache_lookups",
            "Lookups of the hot-answer cache, by result (hit or miss)",
            ["service", "result"],
        ),
        "dependency_calls": Counter(
            "shopml_dependency_calls",
            "Calls to another part (e.g. the feature store), by outcome: ok, error, timeout, breaker_open",
            ["dependency", "outcome"],
        ),
        "dependency_retries": Counter(
            "shopml_dependency_retries",
            "Second attempts of a failed call to another part, made within the request's deadline",
            ["dependency"],
        ),
        "rate_limited": Counter(
            "shopml_rate_limited",
            "Requests refused with 429 because their client was past its rate limit",
            ["service"],
        ),
        "breaker": Gauge(
            "shopml_breaker_open",
            "1 while the circuit breaker of a dependency is open, else 0",
            ["dependency"],
            multiprocess_mode="max",
        ),
    }


def fallback(service: str, reason: str) -> None:
    _metrics()["fallback"].labels(service=service, reason=reason).inc()


def cache_lookup(service: str, hit: bool) -> None:
    _metrics()["cache"].labels(service=service, result="hit" if hit else "miss").inc()


def dependency_call(dependency: str, outcome: str) -> None:
    _metrics()["dependency_calls"].labels(dependency=dependency, outcome=outcome).inc()


def dependency_retry(dependency: str) -> None:
    _metrics()["dependency_retries"].labels(dependency=dependency).inc()


def rate_limited(service: str) -> None:
    _metrics()["rate_limited"].labels(service=service).inc()


def breaker_open(dependency: str, is_open: bool) -> None:
    _metrics()["breaker"].labels(dependency=dependency).set(1 if is_open else 0)
