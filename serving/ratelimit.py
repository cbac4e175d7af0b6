"""Per-client rate limits of the HTTP services, with the ``limits`` library.

A client is its API key (hashed; the key itself is never stored) or, without one, its
address: the peer's, or the last ``X-Forwarded-For`` entry when the peer is a trusted proxy
(the load balancer). The limits are moving windows in ``limits``' notation, e.g.
``20/second;600/minute``: at most 20 requests in any one second (the burst) and 600 in any
minute (10 a second sustained). Counts live in memory (each worker process counts alone) or
in Redis (``redis://...``: every worker and replica shares one count).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

log = logging.getLogger(__name__)


def parse_limits(text: str) -> list[RateLimitItem]:
    """The limits of ``text`` (``20/second;600/minute``); ValueError naming the text if invalid."""
    try:
        items = parse_many(text)
    except ValueError as e:
        raise ValueError(
            f"rate limit {text!r} is not valid ({e}); write e.g. '20/second;600/minute'"
        ) from None
    if not items:
        raise ValueError(f"rate limit {text!r} names no limit; write e.g. '20/second;600/minute'")
    return items


def async_storage_uri(uri: str) -> str:
    """``memory://`` or ``redis://host:port/db`` as the asyncio storage of ``limits``."""
    return uri if uri.startswith("async+") else f"async+{uri}"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0  # seconds until the exhausted window lets a request through
    limit: str = ""  # the limit that refused it, e.g. "20 per 1 second"


class RateLimiter:
    """Moving-window limits per client of one service."""

    def __init__(self, limits_text: str, storage_uri: str = "memory://", service: str = "shopml"):
        self.items = parse_limits(limits_text)
        self.service = service
        options = {"implementation": "redispy"} if "redis" in storage_uri.split("://")[0] else {}
        self.limiter = MovingWindowRateLimiter(storage_from_string(async_storage_uri(storage_uri), **options))
        self._last_error_log = 0.0

    @staticmethod
    def client_key(
        api_key: str | None, peer: str | None, forwarded_for: str | None, trusted: frozenset
    ) -> str:
        if api_key:
            return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:16]
        if peer in trusted and forwarded_for:
            return "addr:" + forwarded_for.split(",")[-1].strip()
        return f"addr:{peer or 'unknown'}"

    async def check(self, client: str) -> Verdict:
        """Counts one request of ``client``; refused when a window is full. A storage that
        fails lets the request through (a limiter outage must not become the service's)."""
        try:
            for item in self.items:
                if not await self.limiter.hit(item, self.service, client):
                    stats = await self.limiter.get_window_stats(item, self.service, client)
                    wait = max(1, math.ceil(stats.reset_time - time.time()))
                    return Verdict(False, wait, str(item))
        except Exception as e:  # whatever the storage's client raises
            now = time.monotonic()
            if now - self._last_error_log > 60:  # one line a minute, not one a request
                self._last_error_log = now
                log.warning("rate limit storage failed, requests are let through: %s", e)
        return Verdict(True)
