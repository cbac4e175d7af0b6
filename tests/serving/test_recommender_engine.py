"""The recommender's logic without HTTP: model answers, fallbacks, breaker, cache, logging."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import duckdb
import pytest

from data_contracts.landing_log import LandingLog
from features.online import OnlineStoreError
from serving.catalog import Catalog
from serving.config import ServingConfig
from serving.recommender.engine import RecommenderEngine, UnknownItemError, load_model, open_online_store
from serving.recommender.schemas import EventRequest, RecommendRequest, SimilarRequest


class DownStore:
    """An online store whose backend is unreachable: every call raises, and is counted."""

    def __init__(self):
        self.calls = 0

    def read(self, *args, **kwargs):
        self.calls += 1
        raise OnlineStoreError("Redis online store redis://127.0.0.1:1/0 is unreachable")

    append = read

    def close(self):
        pass


class CountingStore:
    """The real store, with its reads counted."""

    def __init__(self, inner):
        self.inner, self.reads = inner, 0

    def read(self, user_id):
        self.reads += 1
        return self.inner.read(user_id)

    def append(self, *args, **kwargs):
        return self.inner.append(*args, **kwargs)

    def close(self):
        self.inner.close()


class FlakyStore(CountingStore):
    """The real store, whose first ``failures`` reads fail as a dropped connection does."""

    def __init__(self, inner, failures: int):
        super().__init__(inner)
        self.failures = failures

    def read(self, user_id):
        self.reads += 1
        if self.reads <= self.failures:
            raise ConnectionResetError("connection reset by peer")
        return self.inner.read(user_id)


def make_engine(settings, tag, store=None, model=True, **config) -> RecommenderEngine:
    return RecommenderEngine(
        load_model(settings, tag) if model else None,
        Catalog.load(settings.warehouse_path),
        (lambda: store) if store is not None else (lambda: open_online_store(settings)),
        LandingLog(settings),
        ServingConfig(**config),
    )


def run(coro):
    return asyncio.run(coro)


def landed(settings, kind):
    return [
        json.loads(line)
        for p in sorted((settings.landing_dir / kind).rglob("*.jsonl"))
        for line in p.read_text().splitlines()
    ]


def test_known_user_gets_the_models_answer_without_seen_or_unavailable_items(
    shop_settings, recommender_tag, shop
):
    engine = make_engine(shop_settings, recommender_tag)
    out = run(engine.recommend(RecommendRequest(user_id="u0", k=5)))
    assert out.fallback is None and out.model_version == recommender_tag
    ids = [i.item_id for i in out.items]
    assert len(ids) == 5 and len(set(ids)) == 5
    assert not set(ids) & set(shop.histories["u0"])
    assert shop.out_of_stock not in ids
    assert [i.score for i in out.items] == sorted((i.score for i in out.items), reverse=True)
    assert all(i.title == f"Item {i.item_id}" for i in out.items)
    # The served answer is logged for the pipeline, under its rec_id.
    (served,) = landed(shop_settings, "served")
    assert served["rec_id"] == out.rec_id and served["items"] == ids and served["fallback"] is None
    assert served["model_version"] == recommender_tag and served["baseline"] is None


def test_unknown_user_gets_popular_in_stock_items(shop_settings, recommender_tag, shop):
    engine = make_engine(shop_settings, recommender_tag)
    out = run(engine.recommend(RecommendRequest(user_id="ghost", k=3)))
    assert out.fallback == "empty_sequence" and out.model_version == "popularity"
    # Views: i1 10, i0 9, i3 4; i19 has the highest popularity but is out of stock.
    assert [i.item_id for i in out.items] == ["i1", "i0", "i3"]
    anything = run(engine.recommend(RecommendRequest(user_id="ghost", k=1, in_stock_only=False)))
    assert anything.items[0].item_id == shop.out_of_stock


def test_session_items_make_a_known_history_for_a_new_user(shop_settings, recommender_tag):
    engine = make_engine(shop_settings, recommender_tag)
    out = run(engine.recommend(RecommendRequest(user_id="ghost", k=4, session_item_ids=["i3", "i4"])))
    assert out.fallback is None and out.model_version == recommender_tag
    assert not {"i3", "i4"} & {i.item_id for i in out.items}
    # Items the model does not know do not make a history.
    unknown = run(engine.recommend(RecommendRequest(user_id="ghost", k=4, session_item_ids=["nope"])))
    assert unknown.fallback == "empty_sequence"


def test_category_filter_holds_for_model_and_popularity(shop_settings, recommender_tag, shop):
    engine = make_engine(shop_settings, recommender_tag)
    for user in ("u1", "ghost"):
        out = run(engine.recommend(RecommendRequest(user_id=user, k=5, category="Toys")))
        assert out.items and all(shop.category(i.item_id) == "Toys > Premium" for i in out.items)
    none = run(engine.recommend(RecommendRequest(user_id="u1", k=5, category="Garden")))
    assert none.items == []


def test_store_down_uses_session_items_or_popularity_flagged(shop_settings, recommender_tag):
    store = DownStore()
    engine = make_engine(shop_settings, recommender_tag, store=store)
    with_session = run(engine.recommend(RecommendRequest(user_id="u0", k=3, session_item_ids=["i5"])))
    assert with_session.fallback == "feature_store_down"
    assert with_session.model_version == recommender_tag and len(with_session.items) == 3
    bare = run(engine.recommend(RecommendRequest(user_id="u0", k=3)))
    assert bare.fallback == "feature_store_down" and bare.model_version == "popularity"
    assert [i.item_id for i in bare.items] == ["i1", "i0", "i3"]


def test_a_failed_store_read_is_retried_once_within_the_deadline(shop_settings, recommender_tag):
    from prometheus_client import REGISTRY

    def retries():
        return (
            REGISTRY.get_sample_value("shopml_dependency_retries_total", {"dependency": "feature_store"}) or 0
        )

    store = FlakyStore(open_online_store(shop_settings), failures=1)
    engine = make_engine(shop_settings, recommender_tag, store=store)
    engine._store()  # opened: reads use the short timeout
    before = retries()
    out = run(engine.recommend(RecommendRequest(user_id="u0")))
    assert out.fallback is None and out.model_version != "popularity"  # the second read answered
    assert store.reads == 2 and retries() == before + 1

    store = FlakyStore(open_online_store(shop_settings), failures=5)
    engine = make_engine(shop_settings, recommender_tag, store=store, breaker_failures=10)
    engine._store()
    assert run(engine.recommend(RecommendRequest(user_id="u0"))).fallback == "feature_store_down"
    assert store.reads == 2  # at most one retry

    # No room left in the request's deadline for a second read: no retry.
    store = FlakyStore(open_online_store(shop_settings), failures=1)
    engine = make_engine(shop_settings, recommender_tag, store=store, model_timeout_s=0.0)
    engine._store()
    assert run(engine.read_sequence("u0", deadline=time.monotonic())) is None and store.reads == 1


def test_breaker_stops_calling_a_failing_store_and_closes_when_it_is_back(shop_settings, recommender_tag):
    store = DownStore()
    engine = make_engine(shop_settings, recommender_tag, store=store, breaker_failures=3, breaker_reset_s=0.2)
    for _ in range(10):
        assert run(engine.recommend(RecommendRequest(user_id="u0"))).fallback == "feature_store_down"
    assert store.calls == 3 and engine.breaker.state == "open"
    time.sleep(0.25)
    # Half open: one trial call; it fails, so the breaker opens again.
    run(engine.recommend(RecommendRequest(user_id="u0")))
    assert store.calls == 4 and engine.breaker.state == "open"
    # The store comes back: the next trial closes the breaker and the model answers again.
    engine._sequences = open_online_store(shop_settings)
    time.sleep(0.25)
    out = run(engine.recommend(RecommendRequest(user_id="u0")))
    assert out.fallback is None and engine.breaker.state == "closed"


def test_a_request_already_late_for_the_model_falls_back_to_popularity(shop_settings, recommender_tag):
    class SlowStore(CountingStore):
        def read(self, user_id):
            time.sleep(0.1)  # within the store's timeout, past the model's
            return super().read(user_id)

    store = SlowStore(open_online_store(shop_settings))
    engine = make_engine(shop_settings, recommender_tag, store, store_timeout_s=1.0, model_timeout_s=0.05)
    engine._sequences = store
    out = run(engine.recommend(RecommendRequest(user_id="u0", k=3)))
    assert out.fallback == "model_timeout" and out.model_version == "popularity" and len(out.items) == 3
    assert store.reads == 1


def test_the_model_runs_on_the_event_loop_not_in_a_thread(shop_settings, recommender_tag):
    # A thread would have to win the GIL back from a busy loop after each of the forward
    # pass's torch ops: under a burst that made each call 10-50x slower (the lasting backlog).
    threads = []

    class Recording(RecommenderEngine):
        def score(self, *args):
            threads.append(threading.current_thread())
            return super().score(*args)

        def neighbours(self, *args):
            threads.append(threading.current_thread())
            return super().neighbours(*args)

    engine = make_engine(shop_settings, recommender_tag)
    engine.__class__ = Recording
    assert run(engine.recommend(RecommendRequest(user_id="u0", k=3))).fallback is None
    assert run(engine.similar(SimilarRequest(item_id="i3", k=2))).fallback is None
    assert threads == [threading.main_thread()] * 2


def test_a_promoted_baseline_answers_flagged_as_a_baseline(shop_settings, shop):
    from data_contracts.warehouse import connect
    from training.recommender.artifact import save_to_store
    from training.recommender.baselines import EASE
    from training.recommender.data import build_dataset, leave_one_out
    from training.recommender.promotion import baseline_artifact

    conn = connect(shop_settings.warehouse_path, read_only=True)
    try:
        data = build_dataset(conn)
    finally:
        conn.close()
    split = leave_one_out(data)
    ease = EASE(split.train, data.num_items, l2=1.0)
    tag = save_to_store(baseline_artifact(ease, data, max_len=10, metrics={}))
    engine = make_engine(shop_settings, tag)
    assert engine.model.baseline == "ease"
    out = run(engine.recommend(RecommendRequest(user_id="u0", k=3)))
    assert out.fallback is None and out.model_version == tag and out.baseline == "ease"
    ids = [i.item_id for i in out.items]
    assert len(ids) == 3 and not set(ids) & set(shop.histories["u0"])
    # The same items, in order, as EASE over u0's history.
    history = [data.item_index()[i] for i in shop.histories["u0"]]
    scores = ease([history])[0]
    scores[history] = float("-inf")
    scores[0] = float("-inf")
    assert set(ids) <= {data.items[i - 1] for i in scores.topk(4).indices.tolist()}
    assert engine.model.recommender.traced is None  # a lookup: nothing to trace
    (served,) = landed(shop_settings, "served")
    assert served["baseline"] == "ease" and served["model_version"] == tag
    # Popularity for an unknown user is a fallback, not the baseline.
    other = run(engine.recommend(RecommendRequest(user_id="nobody", k=2)))
    assert other.baseline is None and other.model_version == "popularity"


def test_no_promoted_model_serves_popularity(shop_settings):
    engine = make_engine(shop_settings, None, model=False)
    out = run(engine.recommend(RecommendRequest(user_id="u0", k=2)))
    assert out.fallback == "no_model" and out.model_version == "popularity"


def test_hot_answers_come_from_the_cache_until_the_user_acts(shop_settings, recommender_tag):
    store = CountingStore(open_online_store(shop_settings))
    engine = make_engine(shop_settings, recommender_tag, store=store)
    first = run(engine.recommend(RecommendRequest(user_id="u2", k=4)))
    second = run(engine.recommend(RecommendRequest(user_id="u2", k=4)))
    assert store.reads == 1 and engine.cache.hits == 1
    assert second.items == first.items and second.rec_id != first.rec_id
    clicked = first.items[0].item_id
    run(
        engine.record_event(
            EventRequest(user_id="u2", item_id=clicked, event_type="rec_click", rec_id=first.rec_id)
        )
    )
    third = run(engine.recommend(RecommendRequest(user_id="u2", k=4)))
    assert store.reads == 2 and clicked not in {i.item_id for i in third.items}


def test_event_is_logged_and_appended_to_the_online_sequence(shop_settings, recommender_tag):
    engine = make_engine(shop_settings, recommender_tag)
    rec_id = "ab" * 16
    out = run(
        engine.record_event(
            EventRequest(
                user_id="newbie", item_id="i7", event_type="rec_click", rec_id=rec_id, session_id="s1"
            )
        )
    )
    assert out.logged and out.stored_online and out.sequence_length == 1
    assert open_online_store(shop_settings).read("newbie").item_ids == ["i7"]
    (event,) = landed(shop_settings, "events")
    assert event["event_id"] == out.event_id and event["source"] == "serving"
    assert {k: event[k] for k in ("user_id", "item_id", "event_type", "rec_id", "session_id")} == {
        "user_id": "newbie",
        "item_id": "i7",
        "event_type": "rec_click",
        "rec_id": rec_id,
        "session_id": "s1",
    }
    assert event["ts"].endswith("Z")
    # The new user now has a history the model can use.
    assert run(engine.recommend(RecommendRequest(user_id="newbie"))).fallback is None


def test_event_with_the_store_down_is_still_logged(shop_settings, recommender_tag):
    engine = make_engine(shop_settings, recommender_tag, store=DownStore())
    out = run(engine.record_event(EventRequest(user_id="u1", item_id="i2", event_type="view")))
    assert out.logged and not out.stored_online and out.fallback == "feature_store_down"
    assert len(landed(shop_settings, "events")) == 1


def test_similar_items(shop_settings, recommender_tag, shop):
    engine = make_engine(shop_settings, recommender_tag)
    out = run(engine.similar(SimilarRequest(item_id="i4", k=5)))
    ids = [i.item_id for i in out.items]
    assert out.fallback is None and len(ids) == 5 and "i4" not in ids and shop.out_of_stock not in ids
    toys = run(engine.similar(SimilarRequest(item_id="i4", k=5, category="Toys")))
    assert all(shop.category(i.item_id) == "Toys > Premium" for i in toys.items)
    without_model = make_engine(shop_settings, None, model=False)
    same_category = run(without_model.similar(SimilarRequest(item_id="i4", k=3)))
    assert same_category.fallback == "no_model"
    assert all(shop.category(i.item_id) == "Home > Basics" and i.item_id != "i4" for i in same_category.items)
    with pytest.raises(UnknownItemError):
        run(engine.similar(SimilarRequest(item_id="nope")))


def test_catalog_is_read_without_keeping_the_warehouse_locked(shop_settings, tmp_path):
    catalog = Catalog.load(shop_settings.warehouse_path)
    assert len(catalog) == 20 and catalog.by_popularity[0] == "i19"
    # A writer (the pipeline) can open the file right after.
    duckdb.connect(str(shop_settings.warehouse_path)).close()
    assert len(Catalog.load(tmp_path / "missing.duckdb")) == 0


def test_traced_scoring_matches_the_training_packages_scores(shop_settings, recommender_tag):
    import torch

    from training.recommender.inference import TracedScorer, score_histories

    engine = make_engine(shop_settings, recommender_tag)
    assert isinstance(
        engine.model.recommender.traced, TracedScorer
    )  # a trained model serves through its traces
    rec = engine.model.recommender
    history = ["i3", "i5", "i7"]
    padded = score_histories(rec.model, [rec.encode(history)])
    ours = engine.score(history, 20, None, False, False)
    expected = padded[0].clone()
    expected[0] = float("-inf")
    top = torch.topk(expected, len(ours))
    assert [i.item_id for i in ours] == [rec.items[i - 1] for i in top.indices.tolist()]
    assert [i.score for i in ours] == pytest.approx(top.values.tolist(), abs=1e-4)
