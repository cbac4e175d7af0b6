"""The HTTP guard in front of both services: bounded load, JSON only, bounded bodies, API key
on writes.

An ASGI middleware, so a rejected request costs no parsing and every rejection is a JSON
``{"error": ...}`` with a 4xx status. Validation of the body itself is left to the typed
pydantic inputs of the APIs (BentoML answers 400 with the field errors).
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import metrics, tracing
from serving.config import ServingConfig
from serving.ratelimit import RateLimiter

# Seconds a shed request is told to wait (one second at the limit is hundreds of requests served).
RETRY_AFTER_S = 1


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


async def send_error(send: Send, status: int, message: str, headers: list | None = None) -> None:
    body = error_body(message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def api_key_of(headers: dict[bytes, bytes]) -> str | None:
    """The key from ``X-API-Key`` or ``Authorization: Bearer <key>``."""
    if b"x-api-key" in headers:
        return headers[b"x-api-key"].decode("latin-1")
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


class GuardMiddleware:
    """Rejects what the APIs should never see.

    - a client past its rate limit (``rate_limit``, ``serving.ratelimit``) → 429 with
      ``Retry-After``, before it takes a place among the requests in progress;
    - a request past ``max_in_flight`` requests in progress → 503 with ``Retry-After``: a
      burst beyond what the worker can serve is refused at once, at no cost, instead of
      queueing without bound behind the ones in progress (every one of them late);
    - a body on an API path that is not ``application/json`` → 415 (BentoML would try its
      multipart and pickle decoders, and a broken multipart body ends in a 500);
    - a body over ``max_body_bytes`` → 413 (read at most that much, whatever the headers say);
    - a write path without the right API key, when one is configured → 401.
    """

    def __init__(
        self,
        app: ASGIApp,
        api_paths: frozenset[str],
        write_paths: frozenset[str] = frozenset(),
        config: ServingConfig | None = None,
        service: str = "shopml",
    ):
        # Built with the app, so the key and limits are read from the environment of the
        # worker that serves, not of whoever imported the service module.
        config = config or ServingConfig.from_env()
        self.app = app
        self.api_paths = api_paths
        self.write_paths = write_paths
        self.api_key = config.api_key
        self.max_body_bytes = config.max_body_bytes
        self.max_in_flight = config.max_in_flight
        self.service = service
        self.trusted_proxies = config.trusted_proxies
        self.rate_limiter = (
            RateLimiter(config.rate_limit, config.rate_limit_storage, service) if config.rate_limit else None
        )
        # Only the worker's event loop touches it: no lock.
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.api_paths:
            await self.app(scope, receive, send)
            return
        if self.rate_limiter is not None and not await self._within_rate_limit(scope, send):
            return
        if self.max_in_flight and self.in_flight >= self.max_in_flight:
            await send_error(
                send,
                503,
                f"the service has {self.in_flight} requests in progress, its limit: retry shortly",
                [(b"retry-after", str(RETRY_AFTER_S).encode())],
            )
            return
        self.in_flight += 1
        try:
            if tracing.enabled():
                await self._traced(scope, receive, send)
            else:
                await self._guarded(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _traced(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The request as a server span (continuing the caller's ``traceparent``); the answer
        names the trace in ``X-Trace-Id``."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        with tracing.server_span(f"{scope['method']} {scope['path']}", headers) as span:
            trace_id = tracing.current_trace_id()

            async def send_traced(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                    if trace_id is not None:
                        message = {
                            **message,
                            "headers": [*message.get("headers", []), (b"x-trace-id", trace_id.encode())],
                        }
                await send(message)

            await self._guarded(scope, receive, send_traced)

    async def _within_rate_limit(self, scope: Scope, send: Send) -> bool:
        headers = dict(scope["headers"])
        forwarded = headers.get(b"x-forwarded-for")
        client = RateLimiter.client_key(
            api_key_of(headers),
            (scope.get("client") or (None,))[0],
            forwarded.decode("latin-1") if forwarded else None,
            self.trusted_proxies,
        )
        verdict = await self.rate_limiter.check(client)
        if verdict.allowed:
            return True
        metrics.rate_limited(self.service)
        await send_error(
            send,
            429,
            f"too many requests from this client (limit: {verdict.limit}); retry in {verdict.retry_after_s} s",
            [(b"retry-after", str(verdict.retry_after_s).encode())],
        )
        return False

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        if self.api_key and scope["path"] in self.write_paths:
            given = api_key_of(headers)
            if given is None or not hmac.compare_digest(given.encode(), self.api_key.encode()):
                await send_error(
                    send,
                    401,
                    "this endpoint needs the API key in the X-API-Key header (or Authorization: Bearer)",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        media = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if media != b"application/json":
            await send_error(
                send, 415, f"send JSON (Content-Type: application/json), not {media.decode('latin-1')!r}"
            )
            return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await send_error(send, 413, f"the request body is larger than {self.max_body_bytes} bytes")
            return
        # Read the body here, bounded, and hand it on in one piece.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await send_error(send, 413, f"the request body is larger than {self.max_body_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
