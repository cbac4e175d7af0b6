"""POST /search as plain async Python: the search engine over the built index, personalised by
the recommender engine's model and the shopper's online sequence, logged like /recommend.

No index yet (the pipeline has not built one) is an answer with ``index_ready: false``, never
an error; a slow search is abandoned for an empty, flagged answer.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial

from data_contracts.landing_log import LandingLog
from data_contracts.settings import Settings
from search.config import SearchConfig
from search.engine import Filters, SearchEngine, SearchResult
from serving import metrics
from serving.recommender.engine import RecommenderEngine
from serving.recommender.schemas import SearchItem, SearchRequest, SearchResponse, SearchWhy
from serving.resilience import in_thread

log = logging.getLogger(__name__)
SERVICE = "search"


def load_search_engine(settings: Settings, config: SearchConfig | None = None) -> SearchEngine | None:
    """The current index under the settings' search folder; None (logged) when there is none."""
    from search.encoder import Encoder, EncoderError
    from search.index import SearchIndexError, load_index

    config = config or SearchConfig.from_env()
    try:
        index = load_index(settings.search_index_dir, config.spell_min_length, config.spell_max_edits)
    except SearchIndexError as e:
        log.error("search index not loaded: %s; /search answers index_ready=false", e)
        return None
    if index is None:
        log.warning(
            "no search index under %s yet: /search answers index_ready=false", settings.search_index_dir
        )
        return None
    engine = SearchEngine(index, Encoder.for_index(index.manifest, index.path, threads=1), config)
    try:
        engine.search("warm up", 1)  # loads the query encoder and allocates, before the first request
    except EncoderError as e:
        log.error("search index %s not served: %s; /search answers index_ready=false", index.path, e)
        return None
    return engine


class ProductSearch:
    def __init__(
        self,
        engine: SearchEngine | None,
        recommender: RecommenderEngine | None,
        landing: LandingLog | None,
        timeout_s: float = 0.5,
    ):
        self.engine = engine
        self.recommender = recommender
        self.landing = landing
        self.timeout_s = timeout_s
        # One thread: a search is a few milliseconds of CPU; more threads would only contend.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="search")

    async def search(self, req: SearchRequest) -> SearchResponse:
        search_id = uuid.uuid4().hex
        if self.engine is None:
            metrics.fallback(SERVICE, "no_index")
            return SearchResponse(
                search_id=search_id, query=req.query, index_ready=False, fallback="no_index", items=[]
            )
        history, fallback = await self._history(req)
        personal = None
        model = self.recommender.model if self.recommender is not None else None
        if model is not None and history:
            personal = partial(model.recommender.scores_for, history)
        filters = Filters(req.category, req.min_price, req.max_price, req.in_stock)
        try:
            result: SearchResult = await in_thread(
                self.engine.search,
                req.query,
                req.k,
                filters,
                personal,
                timeout_s=self.timeout_s,
                executor=self._thread,
            )
        except TimeoutError:
            metrics.fallback(SERVICE, "search_timeout")
            return SearchResponse(
                search_id=search_id,
                query=req.query,
                index_ready=True,
                index_version=self.engine.index.version,
                fallback="search_timeout",
                items=[],
            )
        if fallback is not None:
            metrics.fallback(SERVICE, fallback)
        response = SearchResponse(
            search_id=search_id,
            query=req.query,
            corrected_query=result.corrected_query,
            index_ready=True,
            index_version=self.engine.index.version,
            personalised=result.personalised,
            fallback=fallback,
            items=[self._item(h) for h in result.hits],
        )
        self._log_served(req, response)
        return response

    async def _history(self, req: SearchRequest) -> tuple[list[str], str | None]:
        """The shopper's stored sequence and the session's items (the store down: the session's)."""
        session = list(req.session_item_ids)
        if req.user_id is None or self.recommender is None or self.recommender.model is None:
            return session, None
        stored = await self.recommender.read_sequence(req.user_id)
        if stored is None:
            return session, "feature_store_down"
        return stored + session, None

    def _item(self, hit) -> SearchItem:
        index = self.engine.index
        price = float(index.prices[hit.row])
        return SearchItem(
            item_id=hit.item_id,
            title=index.titles[hit.row],
            price=None if price != price else round(price, 2),
            category=index.categories[hit.row],
            brand=index.brands[hit.row],
            in_stock=bool(index.in_stock[hit.row]),
            score=round(hit.score, 6),
            why=SearchWhy(lexical_rank=hit.lexical_rank, dense_rank=hit.dense_rank, personal=hit.personal),
        )

    def _log_served(self, req: SearchRequest, response: SearchResponse) -> None:
        if self.landing is None:
            return
        record = {
            "search_id": response.search_id,
            "ts": datetime.now(UTC),
            "user_id": req.user_id,
            "session_id": req.session_id,
            "query": req.query,
            "index_version": response.index_version,
            "personalised": response.personalised,
            "items": [i.item_id for i in response.items],
            "scores": [i.score for i in response.items],
        }
        try:
            self.landing.write("searches", record)
        except OSError as e:
            log.error("cannot log served search %s: %s", response.search_id, e)
            metrics.fallback(SERVICE, "served_log_failed")

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
