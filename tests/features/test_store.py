import sqlite3

import polars as pl

from features.offline import write_offline_sources
from features.online import open_sequences
from features.services import RECOMMENDER_V1
from features.store import materialize


def _rows(config) -> list[tuple]:
    with sqlite3.connect(config.sqlite_path) as conn:
        return conn.execute(
            'SELECT * FROM "shopml_user_recent_items" ORDER BY entity_key, feature_name'
        ).fetchall()


def test_apply_registers_the_repo(local_store):
    views = {v.name: v for v in local_store.list_feature_views()}
    assert set(views) == {"user_recent_items", "item_features", "user_stats"}
    assert all(v.tags and v.ttl is not None for v in views.values())
    service = local_store.get_feature_service(RECOMMENDER_V1)
    assert {p.name for p in service.feature_view_projections} == {"user_recent_items", "user_stats"}
    assert {e.name for e in local_store.list_entities()} == {"user", "item"}


def test_materialised_sequences_equal_the_warehouse(local_store, local_config, shop):
    expected = shop.expected_sequences(shop.events(), shop.N)
    with open_sequences(local_store, local_config) as sequences:
        for row in expected.iter_rows(named=True):
            got = sequences.read(row["user_id"])
            assert (got.item_ids, got.event_types) == (row["item_ids"], row["event_types"])
            assert int(got.last_event_ts.timestamp()) == int(row["last_event_ts"].timestamp())


def test_feast_reads_the_same_online_values(local_store):
    result = local_store.get_online_features(
        features=["user_recent_items:recent_item_ids", "user_stats:total_events", "item_features:price"],
        entity_rows=[{"user_id": "alice", "item_id": "i3"}, {"user_id": "nobody", "item_id": "i8"}],
    ).to_dict()
    assert result["recent_item_ids"] == [["i2", "i3", "i4", "i5", "i9"], None]
    assert result["total_events"] == [7, None]
    assert result["price"] == [3.5, 8.5]


def test_materialising_twice_changes_nothing(local_store, local_config):
    before = _rows(local_config)
    assert materialize(local_store, local_config) == []
    assert _rows(local_config) == before


def test_materialisation_is_incremental(local_store, local_config, warehouse, shop):
    with open_sequences(local_store, local_config) as sequences:
        # A click served online that the warehouse has not seen yet...
        sequences.append("carol", "i6", "rec_click", ts=shop.minutes(20))
        # ...and a new event of bob's that reaches the warehouse.
        new = pl.concat(
            [shop.events(), pl.DataFrame([shop.event("b9", 30, "bob", "i8")])], how="diagonal_relaxed"
        )
        warehouse.write(new)
        with warehouse.connect() as conn:
            writes = write_offline_sources(conn, local_config.offline_dir, shop.N)
        assert writes[0].changed_rows == 1
        done = materialize(local_store, local_config)
        assert [(m.source, m.entities) for m in done] == [("user_history", 1), ("item_features", 10)]
        assert sequences.read("bob").item_ids == ["i1", "i2", "i3", "i8"]
        # carol was not in the changed window, so her online click is still there.
        assert sequences.read("carol").item_ids == ["i4", "i6"]


def test_late_events_are_materialised(local_store, local_config, warehouse, shop):
    # An event older than everything materialised so far (a back-dated file).
    late = shop.event("c0", -60, "carol", "i0")
    warehouse.write(pl.concat([shop.events(), pl.DataFrame([late])], how="diagonal_relaxed"))
    with warehouse.connect() as conn:
        write_offline_sources(conn, local_config.offline_dir, shop.N)
    materialize(local_store, local_config)
    with open_sequences(local_store, local_config) as sequences:
        assert sequences.read("carol").item_ids == ["i0", "i4"]


def test_full_materialisation_repairs_the_online_store(local_store, local_config):
    before = _rows(local_config)
    with sqlite3.connect(local_config.sqlite_path) as conn:
        conn.execute('DELETE FROM "shopml_user_recent_items"')
    assert materialize(local_store, local_config) == []  # nothing changed offline
    done = materialize(local_store, local_config, full=True)
    assert [(m.source, m.entities) for m in done] == [("user_history", 3), ("item_features", 10)]
    assert [r[:4] for r in _rows(local_config)] == [r[:4] for r in before]
