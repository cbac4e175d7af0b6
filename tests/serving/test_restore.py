"""Recovery: an online store that came back empty is refilled from the offline store, with the
clicks logged since the last ingest, by ``shopml features restore`` and at service start."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime

from data_contracts.landing_log import LandingLog
from serving.config import ServingConfig
from serving.recommender.engine import RecommenderEngine, open_online_store
from serving.recommender.schemas import RecommendRequest


def lose_the_store(settings) -> None:
    """What a Redis restarted without its data looks like: every row gone."""
    sequences = open_online_store(settings)
    try:
        with sqlite3.connect(sequences.path) as conn:
            conn.execute(f'DELETE FROM "{sequences.table}"')
        assert sequences.is_empty()
    finally:
        sequences.close()


def logged_click(settings, user: str, item: str) -> None:
    """A click the service logged while the store was down (not ingested yet)."""
    LandingLog(settings).write(
        "events",
        {
            "event_id": "outage-click",
            "ts": datetime.now(UTC),
            "user_id": user,
            "item_id": item,
            "event_type": "rec_click",
            "source": "serving",
        },
    )


def sequence_of(settings, user: str) -> list[str]:
    sequences = open_online_store(settings)
    try:
        return sequences.read(user).item_ids
    finally:
        sequences.close()


def test_the_service_restores_an_empty_store_at_start(shop_settings, recommender_tag, shop):
    logged_click(shop_settings, "u3", "i17")
    lose_the_store(shop_settings)
    engine = RecommenderEngine.from_settings(shop_settings, ServingConfig(recommender_tag=recommender_tag))
    try:
        assert sequence_of(shop_settings, "u3") == [*shop.histories["u3"], "i17"]
        assert sequence_of(shop_settings, "u0") == shop.histories["u0"]
        answer = asyncio.run(engine.recommend(RecommendRequest(user_id="u3", k=3)))
        assert answer.fallback is None  # the shopper's own sequence, not popularity
    finally:
        engine.close()


def test_features_restore_command(shop_settings, shop, capsys):
    from pipelines.cli import main

    logged_click(shop_settings, "u5", "i18")
    lose_the_store(shop_settings)
    assert main(["features", "restore"]) == 0
    restored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["restored"]
    assert restored["users"] == len(shop.histories) and restored["replayed"] == 1
    assert sequence_of(shop_settings, "u5") == [*shop.histories["u5"], "i18"]
    # Run again on a full store: the same rows, the logged click not appended twice.
    assert main(["features", "restore"]) == 0
    assert sequence_of(shop_settings, "u5") == [*shop.histories["u5"], "i18"]


def test_a_store_that_is_not_empty_is_left_alone(shop_settings, recommender_tag, shop):
    logged_click(shop_settings, "u1", "i16")
    RecommenderEngine.from_settings(shop_settings, ServingConfig(recommender_tag=recommender_tag)).close()
    assert sequence_of(shop_settings, "u1") == shop.histories["u1"]
