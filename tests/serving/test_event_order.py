"""Order under concurrency: 50 clicks of one user arriving together keep every click, and the
online sequence has them in event-time order, the order the warehouse computes from the log."""

from __future__ import annotations

import asyncio
import json
import uuid

import polars as pl
import pytest

from data_contracts.landing_log import LandingLog
from data_contracts.schemas import EVENT_SCHEMA, conform
from pipelines.ingest.transform import build_user_sequences
from serving.catalog import Catalog
from serving.config import ServingConfig
from serving.recommender.engine import RecommenderEngine
from serving.recommender.schemas import EventRequest

CLICKS = 50


def logged_events(settings) -> pl.DataFrame:
    rows = [
        json.loads(line)
        for path in sorted((settings.landing_dir / "events").rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    frame = pl.DataFrame(rows).with_columns(pl.col("ts").str.to_datetime(time_unit="us", time_zone="UTC"))
    return conform(frame.select([c for c in EVENT_SCHEMA if c in frame.columns]), EVENT_SCHEMA)


def burst(settings, open_store) -> tuple[list[str], list[str], list[str]]:
    """50 concurrent clicks of one new user through the engine: what the store holds, what the
    warehouse computes from the event log, and the items clicked."""
    engine = RecommenderEngine(
        None, Catalog.load(settings.warehouse_path), open_store, LandingLog(settings), ServingConfig()
    )
    user = f"burst-{uuid.uuid4().hex[:8]}"
    items = [f"item-{n}" for n in range(CLICKS)]

    async def clicks():
        return await asyncio.gather(
            *(
                engine.record_event(EventRequest(user_id=user, item_id=item, event_type="rec_click"))
                for item in items
            )
        )

    try:
        answers = asyncio.run(clicks())
        assert all(a.stored_online and a.logged for a in answers)
        online = engine._store().read(user).item_ids
    finally:
        engine.close()
    events = logged_events(settings).filter(pl.col("user_id") == user)
    warehouse = build_user_sequences(events, settings.sequence_length)["item_ids"].to_list()[0]
    return online, warehouse, items


def test_concurrent_clicks_are_kept_in_event_time_order_on_sqlite(shop_settings):
    from serving.recommender.engine import open_online_store

    online, warehouse, items = burst(shop_settings, lambda: open_online_store(shop_settings))
    assert sorted(online) == sorted(items), "every click is kept"
    assert online == warehouse


@pytest.mark.integration
def test_concurrent_clicks_are_kept_in_event_time_order_on_redis(shop_settings):
    from conftest import redis_client

    from features.online import RedisSequences
    from features.views import USER_RECENT_ITEMS

    url = "redis://127.0.0.1:6379/13"
    client = redis_client(url)
    project = f"order{uuid.uuid4().hex[:8]}"
    try:
        online, warehouse, items = burst(
            shop_settings,
            lambda: RedisSequences(
                client, f"Redis {url}", USER_RECENT_ITEMS, project, shop_settings.sequence_length, 3
            ),
        )
    finally:
        for key in client.scan_iter(match=f"*{project}*"):
            client.delete(key)
    assert sorted(online) == sorted(items), "every click is kept"
    assert online == warehouse
