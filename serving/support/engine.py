"""What the support service does, as plain async Python (tested without HTTP).

The support runtime runs in a worker thread with a timeout; a slow or failing runtime (its
dialogue store down, say) gives a handover to a human instead of a 5xx, and a circuit
breaker stops calling it while it keeps failing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import torch

from data_contracts.landing_log import LandingLog
from data_contracts.settings import Settings
from data_contracts.shop import ShopProfile
from data_contracts.support import FeedbackError
from serving import metrics, tracing
from serving.catalog import Catalog
from serving.config import ServingConfig
from serving.experiments import POPULARITY, Experiment, ExperimentRegistry, StopFlag, configured_experiment
from serving.resilience import BreakerOpen, CircuitBreaker, TTLCache, in_thread
from serving.served import ServedLog
from serving.support.schemas import ChatRequest, ChatResponse, FeedbackRequest, FeedbackResponse
from training.support.dialogue import redact
from training.support.products import ProductAssistant, ProductCatalog
from training.support.runtime import HANDOVER_REPLY, SessionForbidden, SupportRuntime, UnknownReplyError

log = logging.getLogger(__name__)
SERVICE = "support"
READY_PROBE = "readyz-probe"  # a reply id no one has: /readyz reads it to see the store answer

__all__ = ["FeedbackError", "FeedbackUnavailable", "SessionForbidden", "SupportEngine", "UnknownReplyError"]


def load_products(settings: Settings) -> ProductAssistant:
    """Product search over the index the recommender's /search serves (``data/search``) and
    the warehouse's catalog for the facts; without an index, product turns say search is not
    available (the catalog alone still answers nothing: it cannot be searched)."""
    from serving.recommender.search import load_search_engine

    engine = load_search_engine(settings)
    if engine is None:
        return ProductAssistant(None, None)
    catalog = _warehouse_catalog(settings)
    if catalog is None or not len(catalog):
        # No warehouse to read (a service given only the index): the catalog rows it indexed.
        catalog = ProductCatalog.from_index(engine.index.path)
    return ProductAssistant(engine, catalog)


def _warehouse_catalog(settings: Settings) -> ProductCatalog | None:
    from data_contracts import warehouse

    if not settings.warehouse_path.exists():
        return None
    try:
        # Read-only and closed at once: the pipeline writes the warehouse.
        with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
            if not warehouse.table_exists(conn, "catalog"):
                return None
            return ProductCatalog.from_frame(warehouse.read(conn, "SELECT * FROM catalog"))
    except Exception as e:  # duckdb raises several types for a locked or unready file
        log.warning(
            "cannot read the catalog from %s (%s): product facts from the search index",
            settings.warehouse_path,
            e,
        )
        return None


def load_variants(
    settings: Settings, experiment: Experiment, load: Callable[[str], SupportRuntime]
) -> dict[str, SupportRuntime]:
    """Each variant's runtime, ``load``ed once per distinct model version."""
    from training.support.artifact import tag_for

    by_tag: dict[str, SupportRuntime] = {}
    out = {}
    for variant in experiment.variants:
        if variant.model == POPULARITY:
            raise ValueError(f"variant {variant.name!r}: the support service has no popularity arm")
        tag = tag_for(variant.model, settings)
        if tag not in by_tag:
            by_tag[tag] = load(tag)
        out[variant.name] = by_tag[tag]
    return out


class UnknownRecommendationError(UnknownReplyError):
    """Feedback names a rec_id the recommender never served (in the window it keeps): 404."""


class FeedbackUnavailable(RuntimeError):
    """The dialogue store or the landing log could not take the feedback now (503, retry)."""


class SupportEngine:
    def __init__(
        self,
        runtime: SupportRuntime,
        landing: LandingLog | None,
        config: ServingConfig | None = None,
        experiment: Experiment | None = None,
        variants: dict[str, SupportRuntime] | None = None,
        experiment_stopped: Callable[[], bool] = lambda: False,
    ):
        """``experiment`` splits /chat traffic between ``variants`` (variant name -> runtime,
        every variant of the experiment; they share one dialogue store); ``runtime`` is then
        the champion's, which also answers outside the experiment's window or after
        ``experiment_stopped()`` says it was stopped."""
        self.runtime = runtime
        self.landing = landing
        self.config = config or ServingConfig()
        self.model_version = runtime.model.tag or "support"
        self.experiment = experiment
        self.variants = variants or {}
        self.experiment_stopped = experiment_stopped
        if experiment is not None and set(self.variants) != {v.name for v in experiment.variants}:
            raise ValueError(f"experiment {experiment.name!r} needs a model for each of its variants")
        self.breaker = CircuitBreaker(
            "support pipeline", self.config.breaker_failures, self.config.breaker_reset_s
        )
        # The recommendations served lately, from the recommender's landing log.
        self.served = ServedLog(landing.root) if landing is not None else None
        # reply_id → (session_id, user_id) of replies this worker gave, for the feedback record.
        self._sessions = TTLCache(self.config.cache_entries, 24 * 3600.0)

    @classmethod
    def from_settings(cls, settings: Settings, config: ServingConfig) -> SupportEngine:
        tracing.configure(SERVICE, config.trace_exporter, config.trace_endpoint, config.trace_sample_rate)
        # Product titles (brands included) are the shop's own words: not evidence of a language.
        titles = [item.title for item in Catalog.load(settings.warehouse_path).items.values() if item.title]
        products = load_products(settings)
        profile = ShopProfile.from_env()
        store = None  # the first runtime's dialogue store, shared by every variant

        def load(tag: str | None) -> SupportRuntime:
            nonlocal store
            runtime = SupportRuntime.load(
                settings,
                tag=tag,
                store=store,
                use_generator=config.support_generate,
                int8_generator=config.support_int8 and not torch.cuda.is_available(),
                vocabulary=titles,
                profile=profile,
                session_ttl_s=config.support_session_ttl_s,
                products=products,
                decode_threads=config.support_decode_threads,
                tracer=tracing.tracer(),
            )
            store = runtime.store
            return runtime

        registry = ExperimentRegistry(settings.experiments_dir)
        experiment = configured_experiment(SERVICE, registry, pinned=bool(config.support_tag))
        variants, stopped = {}, lambda: False
        if experiment is not None:
            variants = load_variants(settings, experiment, load)
            registry.register(SERVICE, experiment, {n: r.model.tag for n, r in variants.items()})
            stopped = StopFlag(registry, experiment.name)
            log.warning(
                "experiment %r: %s",
                experiment.name,
                ", ".join(f"{v.name} {v.weight} ({variants[v.name].model.tag})" for v in experiment.variants),
            )
        runtime = variants[experiment.champion.name] if experiment else load(config.support_tag)
        # After load: the runtime sets the model's training thread count.
        torch.set_num_threads(config.support_torch_threads)
        return cls(runtime, LandingLog(settings), config, experiment, variants, stopped)

    def live_experiment(self) -> Experiment | None:
        """The traffic split while it runs and nobody stopped it; else None (the champion answers)."""
        experiment = self.experiment
        return experiment if experiment is not None and experiment.live(self.experiment_stopped()) else None

    @property
    def products_ready(self) -> bool:
        return self.runtime.products.available

    def ready(self) -> bool:
        """For /readyz: the reply pipeline is not failing and its dialogue store answers."""
        if self.breaker.state == "open":
            return False
        try:
            self.runtime.store.get_reply(READY_PROBE)
        except Exception as e:  # whatever the store's client raises: not ready
            log.debug("support not ready: the dialogue store failed (%s)", e)
            return False
        return True

    async def chat(self, req: ChatRequest) -> ChatResponse:
        """Raises SessionForbidden (403) when the session is another caller's."""
        session_id, token = req.session_id or uuid.uuid4().hex, None
        experiment = self.live_experiment()
        variant, runtime = None, self.runtime
        try:
            # A wrong token is the caller's error, not a failing store: returned, not raised,
            # so that it never opens the breaker.
            opened = await self.breaker.call_async(
                self._open_session, session_id, req.session_token, timeout_s=self.config.chat_timeout_s
            )
            if isinstance(opened, SessionForbidden):
                raise opened
            session_id, token = opened
            # A known shopper keeps their variant across sessions; anonymous traffic, its session.
            variant = experiment.assign(req.user_id or session_id) if experiment is not None else None
            runtime = self.variants[variant.name] if variant is not None else self.runtime
            out = await self.breaker.call_async(
                runtime.reply, session_id, req.message, timeout_s=self.config.chat_timeout_s
            )
            fallback = None
        except SessionForbidden:
            raise
        except BreakerOpen:
            out, fallback = None, "unavailable"
        except TimeoutError:
            out, fallback = None, "timeout"
        except Exception:
            log.exception("support reply failed for session %r", session_id)
            out, fallback = None, "model_error"
        finally:
            metrics.breaker_open("support_pipeline", self.breaker.state == "open")
        if out is None:
            metrics.fallback(SERVICE, fallback)
            out = {"reply": HANDOVER_REPLY, "reply_id": uuid.uuid4().hex, "handover": True}
        response = ChatResponse(
            **out,
            session_id=session_id,
            session_token=token,
            model_version=runtime.model.tag or self.model_version,
            fallback=fallback,
            experiment=experiment.name if variant is not None else None,
            variant=variant.name if variant is not None else None,
        )
        self._sessions.put(response.reply_id, (session_id, req.user_id))
        self._log_reply(req, response)
        return response

    def _open_session(self, session_id: str, token: str | None) -> tuple[str, str | None] | SessionForbidden:
        try:
            return self.runtime.open_session(session_id, token)
        except SessionForbidden as e:
            return e

    def _log_reply(self, req: ChatRequest, response: ChatResponse) -> None:
        if self.landing is None:
            return
        try:
            slot_values = tuple(self.runtime.store.slots(response.session_id).values())
        except Exception:  # the store is down: the patterns still mask what they know
            slot_values = ()
        record = {
            "reply_id": response.reply_id,
            "ts": datetime.now(UTC),
            "session_id": response.session_id,
            "user_id": req.user_id,
            # The log outlives the dialogue store's TTL: no personal data in clear.
            "message": redact(req.message, slot_values),
            "reply": redact(response.reply, slot_values),
            "sources": [s.doc_id for s in response.sources],
            "top_score": response.candidates[0].score if response.candidates else None,
            "handover": response.handover,
            "model_version": self.model_version
            if response.fallback is None
            else f"fallback:{response.fallback}",
            "goal": response.goal,
            "products": [p.item_id for p in response.products],
            "experiment": response.experiment,
            "variant": response.variant,
        }
        try:
            self.landing.write("replies", record)
        except OSError as e:
            log.error("cannot log reply %s: %s", response.reply_id, e)

    async def feedback(self, req: FeedbackRequest) -> FeedbackResponse:
        """Raises UnknownReplyError (404) or FeedbackError (400) for a reply it cannot take."""
        session_id, user_id = req.session_id, req.user_id
        if req.target_kind == "reply":
            # The runtime keeps (context, reply) as ranker training pairs for the next run.
            row = await in_thread(
                self.runtime.record_feedback,
                req.target_id,
                req.rating,
                req.reason,
                timeout_s=self.config.chat_timeout_s,
            )
            known = self._sessions.get(req.target_id)
            session_id = session_id or row.get("session_id") or (known[0] if known else None)
            user_id = user_id or (known[1] if known else None)
        elif self.served is not None:
            served = await in_thread(
                self.served.__contains__, req.target_id, timeout_s=self.config.chat_timeout_s
            )
            if not served:
                raise UnknownRecommendationError(
                    f"unknown rec_id {req.target_id!r}: no recommendation with this id was served "
                    f"in the last {self.served.days} days"
                )
        record = {
            "feedback_id": uuid.uuid4().hex,
            "target_id": req.target_id,
            "target_kind": req.target_kind,
            "user_id": user_id,
            "session_id": session_id,
            "rating": req.rating,
            "reason": req.reason,
            "ts": datetime.now(UTC),
        }
        logged = False
        if self.landing is not None:
            try:
                self.landing.write("feedback", record)
            except OSError as e:
                raise FeedbackUnavailable(f"the feedback could not be logged ({e}); retry") from e
            logged = True
        return FeedbackResponse(
            feedback_id=record["feedback_id"],
            target_id=req.target_id,
            target_kind=req.target_kind,
            rating=req.rating,
            logged=logged,
        )
