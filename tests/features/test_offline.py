from datetime import timedelta

import duckdb
import polars as pl

from data_contracts.schemas import EVENT_SCHEMA, conform
from features.offline import frames_connection, read_state, write_offline_sources


def _history(offline_dir) -> pl.DataFrame:
    return pl.read_parquet(offline_dir / "user_history.parquet")


def _write(shop, events, offline_dir, length=None):
    connection = frames_connection(events, shop.catalog(), shop.item_stats(events))
    return write_offline_sources(connection, offline_dir, length or shop.N)


def test_user_history_holds_the_state_after_each_event(shop, tmp_path):
    _write(shop, shop.events(), tmp_path)
    history = _history(tmp_path)
    alice = history.filter(pl.col("user_id") == "alice").sort("event_timestamp")
    assert alice.height == 7
    # After the 2nd event: two items, oldest first.
    assert alice["recent_item_ids"][1].to_list() == ["i0", "i1"]
    # After the last: trimmed to the newest N, newest last, with their event types.
    assert alice["recent_item_ids"][-1].to_list() == ["i2", "i3", "i4", "i5", "i9"]
    assert alice["recent_event_types"][-1].to_list() == ["view", "purchase", "view", "view", "add_to_cart"]
    assert alice["total_events"].to_list() == [1, 2, 3, 4, 5, 6, 7]
    assert alice["purchases"][-1] == 1 and alice["carts"][-1] == 1
    assert alice["last_event_ts"][-1] == shop.minutes(10)


def test_events_sharing_a_timestamp_become_one_state_and_impressions_are_left_out(shop, tmp_path):
    _write(shop, shop.events(), tmp_path)
    bob = _history(tmp_path).filter(pl.col("user_id") == "bob").sort("event_timestamp")
    # b2 and b3 share minute 4: one row holding both, ordered by event id; no rec_impression.
    assert bob["event_timestamp"].to_list() == [shop.minutes(2), shop.minutes(4)]
    assert bob["recent_item_ids"][-1].to_list() == ["i1", "i2", "i3"]


def test_newest_state_per_user_is_the_warehouse_sequence(shop, tmp_path):
    events = shop.events()
    _write(shop, events, tmp_path)
    newest = _history(tmp_path).sort("event_timestamp").group_by("user_id").last().sort("user_id")
    expected = shop.expected_sequences(events, shop.N).sort("user_id")
    assert newest["user_id"].to_list() == expected["user_id"].to_list()
    assert newest["recent_item_ids"].to_list() == expected["item_ids"].to_list()
    assert newest["recent_event_types"].to_list() == expected["event_types"].to_list()
    assert newest["total_events"].to_list() == expected["total_events"].to_list()


def test_item_features_join_catalog_and_popularity(shop, tmp_path):
    _write(shop, shop.events(), tmp_path)
    items = pl.read_parquet(tmp_path / "item_features.parquet").sort("item_id")
    assert items.height == 10
    i3 = items.filter(pl.col("item_id") == "i3").row(0, named=True)
    assert (i3["category"], i3["price"], i3["popularity"], i3["in_stock"]) == ("home > kitchen", 3.5, 2, True)
    assert items.filter(pl.col("item_id") == "i8")["popularity"].item() == 0  # never seen


def test_rewriting_the_same_data_marks_nothing_and_new_events_mark_their_time(shop, tmp_path):
    events = shop.events()
    first = _write(shop, events, tmp_path)
    assert first[0].changed_rows == first[0].rows > 0
    state_before = read_state(tmp_path)
    assert state_before["user_history"] == shop.minutes(0)

    again = _write(shop, events, tmp_path)
    assert [w.changed_rows for w in again] == [0, 0]
    assert read_state(tmp_path) == state_before  # a mark not yet materialised is kept

    late = conform(pl.DataFrame([shop.event("c0", 6, "carol", "i8")]), EVENT_SCHEMA)
    writes = _write(shop, pl.concat([events, late]), tmp_path)
    # carol's state at minute 6 is new and her state at minute 7 changed.
    assert writes[0].changed_rows == 3 and writes[0].changed_since == shop.minutes(6)


def test_a_duckdb_warehouse_connection_works_as_input(shop, tmp_path):
    events = shop.events()
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        for name, frame in (
            ("events", events),
            ("catalog", shop.catalog()),
            ("item_stats", shop.item_stats(events)),
        ):
            conn.register("f", frame.to_arrow())
            conn.execute(f"CREATE TABLE {name} AS SELECT * FROM f")
            conn.unregister("f")
        writes = write_offline_sources(conn, tmp_path / "offline", 2)
    assert writes[0].rows == _history(tmp_path / "offline").height
    assert max(len(x) for x in _history(tmp_path / "offline")["recent_item_ids"].to_list()) == 2
    assert writes[0].changed_since - shop.minutes(0) == timedelta(0)
