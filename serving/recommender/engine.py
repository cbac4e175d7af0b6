"""What the recommender service does, as plain async Python (tested without HTTP).

Every answer degrades instead of failing: the feature store goes through a circuit breaker
with a timeout, a request already late when the model would run skips it, and popularity
from the warehouse's item_stats is the last resort. ``fallback`` in each answer says which
path was taken.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import torch

from data_contracts.landing_log import LandingLog
from data_contracts.settings import Settings
from features.online import OnlineSequences, OnlineStoreError
from serving import metrics, tracing
from serving.catalog import Catalog
from serving.config import ServingConfig
from serving.experiments import POPULARITY, Experiment, ExperimentRegistry, StopFlag, configured_experiment
from serving.recommender.schemas import (
    EventRequest,
    EventResponse,
    RecommendRequest,
    RecommendResponse,
    ScoredItem,
    SimilarRequest,
    SimilarResponse,
)
from serving.resilience import BreakerOpen, CircuitBreaker, TTLCache
from training.recommender.inference import Recommender

log = logging.getLogger(__name__)
SERVICE = "recommender"
DEPENDENCY = "feature_store"  # its name on /metrics
# Masks kept per (category, in_stock_only); categories are few, arbitrary strings are not cached.
MAX_MASKS = 256
OPEN_TIMEOUT_S = 5.0
READY_PROBE = "readyz-probe"  # a user id no one has: /readyz reads it to see the store answer


class UnknownItemError(LookupError):
    """The item is neither in the model's vocabulary nor in the catalog."""


class EventLogError(RuntimeError):
    """The event could not be written to the landing log (disk full, permissions)."""


class AppendAbandoned(RuntimeError):
    """A late append whose request already logged the event without the store: rolled back."""


class EventLogOnce:
    """Writes one event to the landing log exactly once: under the store's lock with the time
    the append used, or, when the append failed or timed out before that, without the store,
    with the time now (a late append then rolls back instead of logging it twice)."""

    def __init__(self, landing: LandingLog, record: dict):
        self.landing = landing
        self.record = record
        self._lock = threading.Lock()
        self._state: Literal["pending", "logged", "abandoned"] = "pending"

    def _write(self, ts: datetime) -> None:
        try:
            self.landing.write("events", {**self.record, "ts": ts})
        except OSError as e:
            raise EventLogError(f"the event could not be logged ({e}); nothing was stored") from e

    def under_store_lock(self, ts: datetime) -> None:
        with self._lock:
            if self._state == "abandoned":
                raise AppendAbandoned("the event was already logged without the online store")
            self._write(ts)
            self._state = "logged"

    def without_store(self) -> None:
        with self._lock:
            if self._state == "logged":
                return
            self._state = "abandoned"
            self._write(datetime.now(UTC))


@dataclass
class Model:
    recommender: Recommender
    version: str
    baseline: str | None = None  # the baseline's name when no trained model beat it


def load_variants(settings: Settings, experiment: Experiment) -> dict[str, Model | None]:
    """Each variant's model, loaded once per distinct tag (None for the popularity arm)."""
    from training.recommender.promotion import tag_for

    by_tag: dict[str, Model] = {}
    out: dict[str, Model | None] = {}
    for variant in experiment.variants:
        if variant.model == POPULARITY:
            out[variant.name] = None
            continue
        tag = tag_for(variant.model)
        if tag not in by_tag:
            model = load_model(settings, tag)
            if model is None:
                raise ValueError(f"variant {variant.name!r}: model {variant.model!r} does not load")
            by_tag[tag] = model
        out[variant.name] = by_tag[tag]
    return out


def open_online_store(settings: Settings) -> OnlineSequences:
    from features.config import FeatureStoreConfig, open_store
    from features.online import open_sequences

    config = FeatureStoreConfig.from_settings(settings)
    return open_sequences(open_store(config), config)


def load_model(settings: Settings, tag: str | None) -> Model | None:
    """The promoted recommender (or ``tag``); None when nothing was promoted yet."""
    from training.recommender.artifact import load_from_store
    from training.recommender.promotion import promoted_tag

    tag = tag or promoted_tag()
    if tag is None:
        log.warning("no promoted recommender in the model store: serving popularity only")
        return None
    artifact = load_from_store(tag)
    baseline = artifact.extra.get("baseline")
    if baseline is not None:
        log.warning("no trained recommender beat the %s baseline: serving that baseline (%s)", baseline, tag)
    return Model(Recommender(artifact.model, artifact.items), artifact.tag or tag, baseline)


class RecommenderEngine:
    def __init__(
        self,
        model: Model | None,
        catalog: Catalog,
        open_store,
        landing: LandingLog | None,
        config: ServingConfig | None = None,
        experiment: Experiment | None = None,
        variants: dict[str, Model] | None = None,
        experiment_stopped: Callable[[], bool] = lambda: False,
    ):
        """``open_store()`` returns the OnlineSequences; it is called lazily, through the breaker,
        so a store that is down at start-up is picked up once it is back.

        ``experiment`` splits /recommend traffic between ``variants`` (variant name -> model,
        every variant of the experiment); ``model`` is then the champion's, which also answers
        /similar, search personalisation and /readyz, and every request outside the
        experiment's window or after ``experiment_stopped()`` says it was stopped."""
        self.config = config or ServingConfig()
        self.model = model
        self.catalog = catalog
        self.landing = landing
        self._open_store = open_store
        self._sequences: OnlineSequences | None = None
        self.breaker = CircuitBreaker(
            "feature store", self.config.breaker_failures, self.config.breaker_reset_s
        )
        self.cache = TTLCache(self.config.cache_entries, self.config.cache_ttl_s)
        # Bumped by each event of a user, so their cached answers are never served again.
        self._generation: dict[str, int] = {}
        self._masks: dict[tuple, torch.Tensor] = {}
        # The model runs on the event loop, not in a thread: a forward pass is ~50 torch ops,
        # each of which releases the GIL, and a thread must win it back from a busy loop up to
        # the interpreter's 5 ms switch interval per op. Under a burst that made a 2 ms call
        # take 20-100 ms, the model thread fell behind, requests waited out the timeout behind
        # calls whose requests had already given up, and the backlog never drained. Store
        # calls (I/O: a socket for Redis) keep their own small pool.
        self._store_threads = ThreadPoolExecutor(4, thread_name_prefix="feature-store")
        self.experiment = experiment
        self.variants = variants or {}
        self.experiment_stopped = experiment_stopped
        if experiment is not None and set(self.variants) != {v.name for v in experiment.variants}:
            raise ValueError(f"experiment {experiment.name!r} needs a model for each of its variants")
        # A model two variants share is prepared once.
        for prepared in {id(m): m for m in [model, *self.variants.values()] if m is not None}.values():
            self._prepare(prepared)

    def _prepare(self, model: Model) -> None:
        rec = model.recommender
        if len(self.catalog):
            # Items the catalog no longer lists are withdrawn: never recommended.
            rec.set_in_stock(np.array([False] + [self.catalog.available(i) for i in rec.items]))
        rec.prepare_for_serving()

    @classmethod
    def from_settings(cls, settings: Settings, config: ServingConfig) -> RecommenderEngine:
        torch.set_num_threads(config.torch_threads)
        tracing.configure(SERVICE, config.trace_exporter, config.trace_endpoint, config.trace_sample_rate)
        registry = ExperimentRegistry(settings.experiments_dir)
        experiment = configured_experiment(SERVICE, registry, pinned=bool(config.recommender_tag))
        variants = load_variants(settings, experiment) if experiment is not None else {}
        stopped = lambda: False  # noqa: E731
        if experiment is not None:
            versions = {name: m.version if m else POPULARITY for name, m in variants.items()}
            registry.register(SERVICE, experiment, versions)
            stopped = StopFlag(registry, experiment.name)
        engine = cls(
            variants[experiment.champion.name]
            if experiment
            else load_model(settings, config.recommender_tag),
            Catalog.load(settings.warehouse_path),
            lambda: open_online_store(settings),
            LandingLog(settings),
            config,
            experiment,
            variants,
            stopped,
        )
        if experiment is not None:
            log.warning(
                "experiment %r: %s",
                experiment.name,
                ", ".join(
                    f"{v.name} {v.weight} ({m.version if (m := variants[v.name]) else POPULARITY})"
                    for v in experiment.variants
                ),
            )
        try:
            store = engine._store()
            if store.is_empty():  # lost (Redis restarted empty) or never loaded: fill it now
                from features.restore import restore

                restored = restore(settings, store)
                log.warning(
                    "the online store was empty: restored %d users from the offline store and "
                    "replayed %d logged events in %.1f s",
                    restored.users,
                    restored.replayed,
                    restored.seconds,
                )
        except Exception as e:  # served with fallbacks until the store can be opened
            log.warning("feature store not available at start-up: %s", e)
        return engine

    @property
    def model_version(self) -> str:
        return self.model.version if self.model else POPULARITY

    # --- the feature store -------------------------------------------------------------------

    def _store(self) -> OnlineSequences:
        if self._sequences is None:
            self._sequences = self._open_store()
        return self._sequences

    async def _through_breaker(self, fn, *args, timeout_s: float):
        try:
            return await self.breaker.call_async(fn, *args, timeout_s=timeout_s, executor=self._store_threads)
        finally:
            metrics.breaker_open(DEPENDENCY, self.breaker.state == "open")

    async def read_sequence(self, user_id: str, deadline: float | None = None) -> list[str] | None:
        """The user's recent items, newest last; None when the store is down or slow.

        A read that fails or times out is tried once more when the request's ``deadline``
        (``time.monotonic()``) leaves room for a whole second read: one lost packet or a
        reconnect should not cost the shopper their personal answer. Every attempt counts
        towards the breaker, so a store that is really down is given up on as fast as before.
        """
        # Opening the store (registry, connection) takes longer than a read.
        timeout_s = self.config.store_timeout_s if self._sequences is not None else OPEN_TIMEOUT_S
        for attempt in (1, 2):
            try:
                sequence = await self._through_breaker(
                    lambda: self._store().read(user_id), timeout_s=timeout_s
                )
            except BreakerOpen:
                metrics.dependency_call(DEPENDENCY, "breaker_open")
                return None
            except (OnlineStoreError, TimeoutError, OSError) as e:
                metrics.dependency_call(DEPENDENCY, "timeout" if isinstance(e, TimeoutError) else "error")
                if attempt == 1 and deadline is not None and time.monotonic() + timeout_s < deadline:
                    metrics.dependency_retry(DEPENDENCY)
                    continue
                log.warning("feature store read failed for %r: %s", user_id, e)
                return None
            except Exception:
                # Whatever else a store client raises is still an outage for this request, not a 500.
                metrics.dependency_call(DEPENDENCY, "error")
                log.exception("feature store read failed for %r", user_id)
                return None
            metrics.dependency_call(DEPENDENCY, "ok")
            return sequence.item_ids
        return None

    def ready(self) -> bool:
        """For /readyz: a model is loaded and the feature store answers (one probe read)."""
        if self.model is None or self.breaker.state == "open":
            return False
        try:
            self._store().read(READY_PROBE)
        except Exception as e:  # whatever the store's client raises: not ready
            log.debug("recommender not ready: the feature store failed (%s)", e)
            return False
        return True

    # --- scoring -------------------------------------------------------------------------------

    def _mask(self, rec: Recommender, category: str | None, in_stock_only: bool) -> torch.Tensor:
        """(N+1,) True for items of ``rec``'s vocabulary no one may get under these filters."""
        key = (id(rec), category, in_stock_only)
        mask = self._masks.get(key)
        if mask is None:
            mask = rec.unavailable.clone() if in_stock_only else torch.zeros_like(rec.unavailable)
            mask[0] = True
            if category is not None:
                mask |= torch.tensor(
                    [True] + [not self.catalog.available(i, category, False) for i in rec.items]
                )
            if len(self._masks) < MAX_MASKS:
                self._masks[key] = mask
        return mask

    def score(
        self, history: list[str], k: int, category, in_stock_only, exclude_seen, model: Model | None = None
    ) -> list[ScoredItem]:
        """The top k of ``model`` (default: the champion) for one history, on the event loop."""
        rec = (model or self.model).recommender
        top = rec.serve_top(history, k, self._mask(rec, category, in_stock_only), exclude_seen)
        return [self._item(item, score) for item, score in top]

    def _item(self, item_id: str, score: float) -> ScoredItem:
        info = self.catalog.items.get(item_id)
        return ScoredItem(
            item_id=item_id,
            score=round(float(score), 6),
            title=info.title if info else None,
            category=info.category if info else None,
        )

    def popular(self, k: int, category, in_stock_only, exclude: frozenset[str]) -> list[ScoredItem]:
        out = []
        for item_id in self.catalog.popular(category, in_stock_only, exclude):
            out.append(self._item(item_id, self.catalog.items[item_id].popularity))
            if len(out) == k:
                break
        return out

    # --- the endpoints -------------------------------------------------------------------------

    def live_experiment(self) -> Experiment | None:
        """The traffic split while it runs and nobody stopped it; else None (the champion answers)."""
        experiment = self.experiment
        return experiment if experiment is not None and experiment.live(self.experiment_stopped()) else None

    async def recommend(self, req: RecommendRequest) -> RecommendResponse:
        experiment = self.live_experiment()
        variant = experiment.assign(req.user_id) if experiment is not None else None
        model = self.variants[variant.name] if variant is not None else self.model
        generation = self._generation.get(req.user_id, 0)
        key = (
            variant.name if variant is not None else None,
            req.user_id,
            generation,
            req.k,
            tuple(req.session_item_ids),
            req.category,
            req.in_stock_only,
            req.exclude_seen,
        )
        cached = self.cache.get(key)
        metrics.cache_lookup(SERVICE, cached is not None)
        if cached is not None:
            items, version, fallback = cached
        else:
            items, version, fallback = await self._recommend(req, model)
            if variant is not None and variant.model == POPULARITY and fallback == "no_model":
                fallback = None  # the popularity arm answers as it should, not as a fallback
            if fallback is None:
                self.cache.put(key, (items, version, fallback))
        # A promoted baseline's answer says so; popularity fallbacks carry their own reason.
        baseline = model.baseline if model is not None and version == model.version else None
        if fallback is not None:
            metrics.fallback(SERVICE, fallback)
        response = RecommendResponse(
            rec_id=uuid.uuid4().hex,
            user_id=req.user_id,
            model_version=version,
            baseline=baseline,
            fallback=fallback,
            experiment=experiment.name if experiment is not None else None,
            variant=variant.name if variant is not None else None,
            items=items,
        )
        self._log_served(req, response)
        return response

    async def _recommend(
        self, req: RecommendRequest, model: Model | None
    ) -> tuple[list[ScoredItem], str, str | None]:
        started = time.monotonic()
        with tracing.span("feature_store.read"):
            stored = await self.read_sequence(req.user_id, deadline=started + self.config.model_timeout_s)
        fallback = "feature_store_down" if stored is None else None
        history = (stored or []) + list(req.session_item_ids)
        seen = frozenset(history) if req.exclude_seen else frozenset()
        filters = (req.category, req.in_stock_only)
        if model is None:
            return self.popular(req.k, *filters, seen), POPULARITY, fallback or "no_model"
        if not len(model.recommender.encode(history)):
            return self.popular(req.k, *filters, seen), POPULARITY, fallback or "empty_sequence"
        # A call on the loop cannot be abandoned: a request already late when the model would
        # start (a slow store read, a busy loop) gets the cheap answer, so a backlog drains.
        if time.monotonic() - started > self.config.model_timeout_s:
            return self.popular(req.k, *filters, seen), POPULARITY, "model_timeout"
        try:
            with tracing.span("recommender.score", model_version=model.version):
                items = self.score(history, req.k, *filters, req.exclude_seen, model)
        except Exception:
            log.exception("recommender model failed for user %r", req.user_id)
            return self.popular(req.k, *filters, seen), POPULARITY, "model_error"
        # Store down but the session's own items were enough for the model: its answer, flagged.
        return items, model.version, fallback

    def _log_served(self, req: RecommendRequest, response: RecommendResponse) -> None:
        if self.landing is None:
            return
        record = {
            "rec_id": response.rec_id,
            "ts": datetime.now(UTC),
            "user_id": req.user_id,
            "session_id": req.session_id,
            "model_version": response.model_version,
            "baseline": response.baseline,
            "items": [i.item_id for i in response.items],
            "scores": [i.score for i in response.items],
            "fallback": response.fallback,
            "experiment": response.experiment,
            "variant": response.variant,
        }
        try:
            self.landing.write("served", record)
        except OSError as e:
            # The answer is still good; only its record for the pipeline is lost (and counted).
            log.error("cannot log served recommendation %s: %s", response.rec_id, e)
            metrics.fallback(SERVICE, "served_log_failed")

    async def record_event(self, req: EventRequest) -> EventResponse:
        event_id = uuid.uuid4().hex
        record = {
            "event_id": event_id,
            "ts": None,  # set by EventLogOnce: the time the store appended it under its lock
            "user_id": req.user_id,
            "item_id": req.item_id,
            "event_type": req.event_type,
            "session_id": req.session_id,
            "quantity": req.quantity,
            "price": req.price,
            "source": "serving",
            "rec_id": req.rec_id,
        }
        # The log is what the next ingest reads and what repairs the online store: it is
        # written under the store's lock, before the append commits, with the append's time,
        # so the online sequence and the warehouse's user_sequences have the same order.
        event_log = EventLogOnce(self.landing, record) if self.landing is not None else None
        self._generation[req.user_id] = self._generation.get(req.user_id, 0) + 1
        try:
            sequence = await self._through_breaker(
                lambda: self._store().append(
                    req.user_id,
                    req.item_id,
                    req.event_type,
                    before_commit=event_log.under_store_lock if event_log else None,
                ),
                timeout_s=self.config.append_timeout_s,
            )
        except EventLogError:
            raise
        except Exception as e:  # any store failure: the event log gets the event now
            if event_log is not None:
                event_log.without_store()
            log.warning("online append failed for %r (%s); the event log has it", req.user_id, e)
            metrics.fallback(SERVICE, "feature_store_down")
            return EventResponse(
                event_id=event_id,
                logged=self.landing is not None,
                stored_online=False,
                fallback="feature_store_down",
            )
        return EventResponse(
            event_id=event_id,
            logged=self.landing is not None,
            stored_online=True,
            sequence_length=len(sequence),
        )

    async def similar(self, req: SimilarRequest) -> SimilarResponse:
        key = ("similar", req.item_id, req.k, req.category, req.in_stock_only)
        cached = self.cache.get(key)
        metrics.cache_lookup(SERVICE, cached is not None)
        if cached is None:
            cached = await self._similar(req)
            if cached[2] is None:
                self.cache.put(key, cached)
        items, version, fallback = cached
        if fallback is not None:
            metrics.fallback(SERVICE, fallback)
        return SimilarResponse(item_id=req.item_id, model_version=version, fallback=fallback, items=items)

    async def _similar(self, req: SimilarRequest) -> tuple[list[ScoredItem], str, str | None]:
        known = self.model is not None and req.item_id in self.model.recommender.index
        if not known:
            info = self.catalog.items.get(req.item_id)
            if info is None:
                raise UnknownItemError(
                    f"unknown item_id {req.item_id!r}: not in the catalog nor in the model"
                )
            # Popular items of the same category stand in for the model's neighbours.
            category = req.category or info.category
            items = self.popular(req.k, category, req.in_stock_only, frozenset([req.item_id]))
            return items, POPULARITY, "no_model" if self.model is None else "unknown_item"
        return self.neighbours(req), self.model_version, None  # one matrix-vector product, on the loop

    def neighbours(self, req: SimilarRequest) -> list[ScoredItem]:
        """Cosine neighbours of the item's vector under the request's filters."""
        rec = self.model.recommender
        top = rec.serve_neighbours(req.item_id, req.k, self._mask(rec, req.category, req.in_stock_only))
        return [self._item(item, score) for item, score in top]

    def close(self) -> None:
        self._store_threads.shutdown(wait=False, cancel_futures=True)
        if self._sequences is not None:
            self._sequences.close()
