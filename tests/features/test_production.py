"""The production environment for real: Redis online store, SQL registry on PostgreSQL."""

from dataclasses import replace

import polars as pl
import psycopg2
import pytest
import redis

from features.checks import check_all_users_online, check_sample_matches_warehouse
from features.config import open_store
from features.online import OnlineStoreError, open_sequences
from features.store import materialize
from features.training import historical_sequences

pytestmark = pytest.mark.integration


def _project_keys(config) -> dict:
    client = redis.Redis.from_url(config.redis_url)
    keys = sorted(client.scan_iter(match=b"*" + config.project.encode(), count=1000))
    state = {key: client.hgetall(key) for key in keys}
    client.close()
    return state


def test_registry_lives_in_postgres(production_store, production_config):
    # A second store object sees the same registry: nothing is local to this process.
    fresh = open_store(production_config)
    assert {v.name for v in fresh.list_feature_views()} == {
        "user_recent_items",
        "item_features",
        "user_stats",
    }
    assert fresh.get_feature_service("recommender_v1").name == "recommender_v1"
    with psycopg2.connect(production_config.postgres_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = 'feature_views'",
            (production_config.registry_schema,),
        )
        assert cur.fetchone()[0] == 1
    conn.close()


def test_redis_serves_the_warehouse_sequences(production_store, production_config, shop):
    expected = shop.expected_sequences(shop.events(), shop.N).sort("user_id")
    with open_sequences(production_store, production_config) as sequences:
        got = sequences.read_many(expected["user_id"].to_list() + ["nobody"])
    assert [s.item_ids for s in got] == expected["item_ids"].to_list() + [[]]
    assert [s.event_types for s in got] == expected["event_types"].to_list() + [[]]
    online = production_store.get_online_features(
        features=["user_recent_items:recent_item_ids", "user_stats:total_events", "item_features:in_stock"],
        entity_rows=[{"user_id": "alice", "item_id": "i9"}],
    ).to_dict()
    assert online["recent_item_ids"] == [["i2", "i3", "i4", "i5", "i9"]]
    assert online["total_events"] == [7] and online["in_stock"] == [False]


def test_materialising_twice_changes_nothing_on_redis(production_store, production_config):
    before = _project_keys(production_config)
    assert len(before) == 3 + 10  # users and items
    assert materialize(production_store, production_config) == []
    assert _project_keys(production_config) == before


def test_append_on_redis_is_seen_by_feast(production_store, production_config, shop):
    with open_sequences(production_store, production_config) as sequences:
        new = sequences.append("bob", "i6", "rec_click", ts=shop.minutes(50))
        assert new.item_ids == ["i1", "i2", "i3", "i6"]
    online = production_store.get_online_features(
        features=["user_recent_items:recent_item_ids", "user_recent_items:last_event_ts"],
        entity_rows=[{"user_id": "bob"}],
    ).to_dict()
    assert online["recent_item_ids"] == [["i1", "i2", "i3", "i6"]]
    assert online["last_event_ts"] == [shop.minutes(50)]


def test_50_concurrent_appends_on_redis_from_threads(production_store, production_config, shop):
    shop.concurrent_appends_threads(production_store, production_config)


@pytest.mark.slow
def test_50_concurrent_appends_on_redis_from_processes(production_store, production_config, shop):
    shop.concurrent_appends_processes(production_store, production_config)


def test_checks_and_training_data_in_production(production_store, production_config, warehouse, shop):
    with open_sequences(production_store, production_config) as sequences, warehouse.connect() as conn:
        assert check_all_users_online(sequences, conn).passed
        assert check_sample_matches_warehouse(sequences, conn).passed
    out = historical_sequences(
        production_store, pl.DataFrame({"user_id": ["alice"], "event_timestamp": [shop.minutes(1)]})
    )
    assert out["recent_item_ids"].to_list() == [["i0", "i1"]]


def test_unreachable_redis_names_the_store(production_store, production_config):
    broken = replace(production_config, redis_url="redis://:pw@127.0.0.1:1/0")
    with open_sequences(production_store, broken) as sequences:
        with pytest.raises(
            OnlineStoreError, match=r"Redis online store redis://:\*\*\*@127.0.0.1:1/0 is unreachable"
        ):
            sequences.read("alice")
