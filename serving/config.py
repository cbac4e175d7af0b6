"""Serving settings: read from ``SHOPML_*`` environment variables, with embedded defaults.

These sit next to ``data_contracts.settings.Settings`` (paths, store URLs, profile), which
every service also reads; they only concern the HTTP layer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from data_contracts.settings import Settings


def _env(name: str, default: str) -> str:
    return os.environ.get(f"SHOPML_{name}", default)


def _number(name: str, default: str, kind: type[int] | type[float]) -> int | float:
    value = _env(name, default)
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(
            f"SHOPML_{name} must be {'an integer' if kind is int else 'a number'}, not {value!r}"
        ) from None
    if not number >= 0:  # also refuses NaN
        raise ValueError(f"SHOPML_{name} must not be negative, not {value!r}")
    return number


def _switch(name: str, default: str) -> bool:
    value = _env(name, default).lower()
    if value not in ("1", "true", "yes", "0", "false", "no"):
        raise ValueError(f"SHOPML_{name} must be 1 or 0 (true/false, yes/no), not {value!r}")
    return value in ("1", "true", "yes")


@dataclass(frozen=True)
class ServingConfig:
    """Limits, timeouts and switches of the HTTP services."""

    # Required on the write endpoints (/events, /feedback) when set; the production profile
    # refuses to start without one.
    api_key: str | None = None
    # Largest request body accepted, in bytes (413 above).
    max_body_bytes: int = 64 * 1024
    # A feature store read slower than this counts as a failure and the request falls back.
    store_timeout_s: float = 0.05
    # An append (a locked read-modify-write) slower than this is left to the event log.
    append_timeout_s: float = 1.0
    # A request that has already taken this long when its model call would start gets the
    # fallback answer instead (the call runs on the event loop and cannot be abandoned).
    model_timeout_s: float = 0.25
    # Requests on the API paths in progress at once per worker; past it the answer is 503 with
    # Retry-After at once, instead of a queue that grows without bound (0: no limit).
    max_in_flight: int = 32
    # Consecutive store failures that open the circuit breaker, and how long it stays open.
    breaker_failures: int = 3
    breaker_reset_s: float = 5.0
    # The small cache of hot answers: entries and their lifetime (0 turns it off).
    cache_entries: int = 10_000
    cache_ttl_s: float = 5.0
    # torch threads per worker (set explicitly: torch's default oversubscribes shared cores).
    torch_threads: int = 1
    # Worker processes per service. A worker's event loop runs the model itself, so one
    # worker uses one core at most; more workers share the listening socket.
    workers: int = 1
    # Serve this model tag instead of the promoted one (None: the promoted version).
    recommender_tag: str | None = None
    support_tag: str | None = None
    # The support reply: retrieve, generate (``generator_candidates`` replies of the model's
    # config in one batched decode) and rank; False (SHOPML_SUPPORT_GENERATE=0): retrieve and
    # rank only, the fast path (no generator loaded).
    support_generate: bool = True
    # int8 generator: 1.45x faster generation on CPU (benchmarks/support.py prints both). The
    # ranker stays fp32: int8 costs it about 1.5 points of R@1. Off on a GPU.
    support_int8: bool = True
    # torch threads of the support service (a reply scores several long pairs: it uses them).
    support_torch_threads: int = 2
    # torch threads of the generator's decode steps (one new token per candidate). Two on two
    # cores: the dialogues' support turns with generation took 1.9-2.2 s (median) against 2.5 s
    # on one (benchmarks/assistant.py). Decodes on several threads take turns, so concurrent
    # replies never ask for more threads than the cores; set 1 on a machine other busy
    # processes share, where a parallel decode can wait on a descheduled thread.
    support_decode_threads: int = 2
    # A support reply slower than this becomes a handover.
    chat_timeout_s: float = 10.0
    # Dialogue state (turns, slots, session bindings) is deleted this long after its last write.
    support_session_ttl_s: float = 24 * 3600.0
    # BentoML's access log: one line per request (method, path, status, latency). Off by
    # default: with the tracing middleware it cost about a third of a recommender request's
    # median at 200 req/s (benchmarks/serving.py), and the served logs under the landing
    # folder and /metrics record every answer either way.
    access_log: bool = False
    # BentoML's OpenTelemetry middleware. Its sample rate is 0 unless a tracing exporter is
    # configured, but it still builds a span context on every request; off, it skips every path.
    tracing: bool = False
    # OpenTelemetry spans of each request and its parts (serving/tracing.py): "none", "console"
    # or "otlp" (to ``trace_endpoint``), keeping ``trace_sample_rate`` of the traces.
    trace_exporter: str = "none"
    trace_endpoint: str | None = None
    trace_sample_rate: float = 1.0
    # Per-client limits on the API paths in ``limits``' notation, e.g. "20/second;600/minute"
    # (a burst of 20 in any second, 10 a second sustained); past them the answer is 429 with
    # Retry-After. A client is its API key, else its address. None: no limit.
    rate_limit: str | None = None
    # Where the counts live: "memory://" (each worker counts alone) or a Redis URL (every
    # worker and replica shares one count; the production profile's default is its Redis).
    rate_limit_storage: str = "memory://"
    # Peers (e.g. the load balancer) whose X-Forwarded-For names the client.
    trusted_proxies: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> ServingConfig:
        from serving.tracing import settings_from_env as trace_settings

        settings = settings or Settings.from_env()
        trace_exporter, trace_endpoint, trace_sample_rate = trace_settings()
        config = cls(
            trace_exporter=trace_exporter,
            trace_endpoint=trace_endpoint,
            trace_sample_rate=trace_sample_rate,
            api_key=_env("API_KEY", "") or None,
            max_body_bytes=_number("MAX_BODY_BYTES", str(64 * 1024), int),
            store_timeout_s=_number("STORE_TIMEOUT_S", "0.05", float),
            append_timeout_s=_number("APPEND_TIMEOUT_S", "1", float),
            model_timeout_s=_number("MODEL_TIMEOUT_S", "0.25", float),
            max_in_flight=_number("MAX_IN_FLIGHT", "32", int),
            breaker_failures=_number("BREAKER_FAILURES", "3", int),
            breaker_reset_s=_number("BREAKER_RESET_S", "5", float),
            cache_entries=_number("CACHE_ENTRIES", "10000", int),
            cache_ttl_s=_number("CACHE_TTL_S", "5", float),
            torch_threads=_number("TORCH_THREADS", "1", int),
            workers=_number("WORKERS", "1", int),
            recommender_tag=_env("RECOMMENDER_TAG", "") or None,
            support_tag=_env("SUPPORT_TAG", "") or None,
            support_generate=_switch("SUPPORT_GENERATE", "1"),
            support_int8=_switch("SUPPORT_INT8", "1"),
            support_torch_threads=_number("SUPPORT_TORCH_THREADS", "2", int),
            support_decode_threads=_number("SUPPORT_DECODE_THREADS", "2", int),
            chat_timeout_s=_number("CHAT_TIMEOUT_S", "10", float),
            support_session_ttl_s=_number("SUPPORT_SESSION_TTL_S", "86400", float),
            access_log=_switch("ACCESS_LOG", "0"),
            tracing=_switch("TRACING", "0"),
            rate_limit=_env("RATE_LIMIT", "") or None,
            rate_limit_storage=_env(
                "RATE_LIMIT_STORAGE", settings.redis_url if settings.profile == "production" else "memory://"
            ),
            trusted_proxies=frozenset(p.strip() for p in _env("TRUSTED_PROXIES", "").split(",") if p.strip()),
        )
        if config.rate_limit:
            from serving.ratelimit import parse_limits

            parse_limits(config.rate_limit)  # a typo stops the start-up, with the text named
        for name in ("workers", "support_decode_threads"):
            if getattr(config, name) < 1:
                raise ValueError(f"SHOPML_{name.upper()} must be at least 1, not {getattr(config, name)}")
        if settings.profile == "production" and not config.api_key:
            raise ValueError("the production profile needs SHOPML_API_KEY for the write endpoints")
        return config

    def service_options(self, timeout_s: float, max_concurrency: int) -> dict:
        """The ``@bentoml.service`` options these settings decide."""
        options = {
            "workers": self.workers,
            "traffic": {"timeout": timeout_s, "max_concurrency": max_concurrency},
            "logging": {"access": {"enabled": self.access_log}},
        }
        if not self.tracing:
            options["tracing"] = {"excluded_urls": [".*"]}
        return options
