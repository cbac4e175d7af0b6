"""The support model over HTTP: ``bentoml serve serving.support.service:SupportService``."""

from __future__ import annotations

import gc

from data_contracts.settings import Settings
from serving.startup import check_support, preflight

# Before BentoML is imported and before any worker starts: invalid settings or a model that
# does not load end the process here with one line, instead of a worker restarted for ever.
CONFIG = preflight("support", check_support)

import bentoml  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402

from serving import tracing  # noqa: E402
from serving.config import ServingConfig  # noqa: E402
from serving.http import GuardMiddleware  # noqa: E402
from serving.logs import quiet_client_errors  # noqa: E402
from serving.openapi import COMMON_ERRORS, publish  # noqa: E402
from serving.support.engine import (  # noqa: E402
    FeedbackError,
    FeedbackUnavailable,
    SessionForbidden,
    SupportEngine,
    UnknownReplyError,
)
from serving.support.schemas import ChatRequest, ChatResponse, FeedbackRequest, FeedbackResponse  # noqa: E402


@bentoml.service(name="support", **CONFIG.service_options(timeout_s=30, max_concurrency=64))
class SupportService:
    def __init__(self) -> None:
        quiet_client_errors()  # a client's 4xx: one INFO line, no traceback
        settings = Settings.from_env()
        self.engine = SupportEngine.from_settings(settings, ServingConfig.from_env(settings))
        # Models, stores and libraries are loaded for good: keep them out of the garbage
        # collector's full passes, which otherwise stall every request in flight (the p99).
        gc.freeze()

    def __is_ready__(self) -> bool:
        return self.engine.ready()

    @bentoml.on_shutdown
    def close(self) -> None:
        tracing.shutdown()  # the spans still waiting for their batch

    @bentoml.api(route="/chat")
    async def chat(self, request: ChatRequest, /) -> ChatResponse:
        """A reply to the shopper's message in this session, its sources and the candidates' scores.

        Omit session_id to start a session: the answer gives its session_id and, once, its
        session_token, which every later message of the session must carry (else 403)."""
        try:
            return await self.engine.chat(request)
        except SessionForbidden as e:
            return JSONResponse({"error": str(e)}, status_code=403)

    @bentoml.api(route="/feedback")
    async def feedback(self, request: FeedbackRequest, /) -> FeedbackResponse:
        """Thumbs up (+1) or down (-1) on a reply or a recommendation; the next training run learns from it."""
        try:
            return await self.engine.feedback(request)
        except UnknownReplyError as e:
            return JSONResponse({"error": str(e)}, status_code=404)
        except FeedbackError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        except FeedbackUnavailable as e:
            return JSONResponse({"error": str(e)}, status_code=503)


WRITE_PATHS = frozenset({"/feedback"})
SupportService.add_asgi_middleware(
    GuardMiddleware,
    service="support",
    api_paths=frozenset({"/chat", "/feedback"}),
    write_paths=WRITE_PATHS,
)
publish(
    SupportService,
    write_paths=WRITE_PATHS,
    errors={
        "/chat": {403: "the session is another caller's: session_token is missing or not this session's"},
        "/feedback": {
            400: f"{COMMON_ERRORS[400]}, or the reply cannot take feedback",
            404: "no reply or recommendation with this id (recommendations: served in the last days)",
            503: f"{COMMON_ERRORS[503]}, or the feedback could not be logged: retry",
        },
    },
)
