"""The recommender over HTTP: ``bentoml serve serving.recommender.service:RecommenderService``."""

from __future__ import annotations

import gc

from data_contracts.settings import Settings
from serving.startup import check_recommender, preflight

# Before BentoML is imported and before any worker starts: invalid settings or a model that
# does not load end the process here with one line, instead of a worker restarted for ever.
CONFIG = preflight("recommender", check_recommender)

import bentoml  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402

from serving import tracing  # noqa: E402
from serving.config import ServingConfig  # noqa: E402
from serving.http import GuardMiddleware  # noqa: E402
from serving.logs import quiet_client_errors  # noqa: E402
from serving.openapi import COMMON_ERRORS, publish  # noqa: E402
from serving.recommender.engine import EventLogError, RecommenderEngine, UnknownItemError  # noqa: E402
from serving.recommender.schemas import (  # noqa: E402
    EventRequest,
    EventResponse,
    RecommendRequest,
    RecommendResponse,
    SearchRequest,
    SearchResponse,
    SimilarRequest,
    SimilarResponse,
)
from serving.recommender.search import ProductSearch, load_search_engine  # noqa: E402


@bentoml.service(name="recommender", **CONFIG.service_options(timeout_s=10, max_concurrency=512))
class RecommenderService:
    def __init__(self) -> None:
        quiet_client_errors()  # a client's 4xx: one INFO line, no traceback
        settings = Settings.from_env()
        self.engine = RecommenderEngine.from_settings(settings, ServingConfig.from_env(settings))
        self.search_engine = ProductSearch(load_search_engine(settings), self.engine, self.engine.landing)
        # Models, stores and libraries are loaded for good: keep them out of the garbage
        # collector's full passes, which otherwise stall every request in flight (the p99).
        gc.freeze()

    def __is_ready__(self) -> bool:
        return self.engine.ready()

    @bentoml.api(route="/recommend")
    async def recommend(self, request: RecommendRequest, /) -> RecommendResponse:
        """Top-k items for a user: the model over their online sequence, else popularity."""
        return await self.engine.recommend(request)

    @bentoml.api(route="/events")
    async def events(self, event: EventRequest, /) -> EventResponse:
        """Log a view, cart, purchase or click and append it to the user's online sequence."""
        try:
            return await self.engine.record_event(event)
        except EventLogError as e:
            return JSONResponse({"error": str(e)}, status_code=503)

    @bentoml.api(route="/similar")
    async def similar(self, request: SimilarRequest, /) -> SimilarResponse:
        """Items similar to an item (its nearest neighbours in the model's item space)."""
        try:
            return await self.engine.similar(request)
        except UnknownItemError as e:
            return JSONResponse({"error": str(e)}, status_code=404)

    @bentoml.api(route="/search")
    async def search(self, request: SearchRequest, /) -> SearchResponse:
        """Products for what a shopper typed: BM25 and MiniLM fused, optionally personalised."""
        return await self.search_engine.search(request)

    @bentoml.on_shutdown
    def close(self) -> None:
        self.search_engine.close()
        self.engine.close()
        tracing.shutdown()  # the spans still waiting for their batch


WRITE_PATHS = frozenset({"/events"})
RecommenderService.add_asgi_middleware(
    GuardMiddleware,
    service="recommender",
    api_paths=frozenset({"/recommend", "/events", "/similar", "/search"}),
    write_paths=WRITE_PATHS,
)
publish(
    RecommenderService,
    write_paths=WRITE_PATHS,
    errors={
        "/events": {
            503: f"{COMMON_ERRORS[503]}, or the event log cannot be written: the event was not "
            "recorded, retry"
        },
        "/similar": {404: "the item is neither in the catalog nor in the model"},
    },
)
