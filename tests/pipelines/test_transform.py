from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl

from data_contracts import schemas
from pipelines.ingest import transform

NOW = datetime(2026, 2, 1, tzinfo=timezone.utc)


def event(event_id, user, item, minute, event_type="view") -> dict:
    return {
        "event_id": event_id,
        "ts": datetime(2026, 1, 1, 10, minute, tzinfo=timezone.utc),
        "user_id": user,
        "item_id": item,
        "event_type": event_type,
        "source": "test",
    }


def frame(rows) -> pl.DataFrame:
    return schemas.conform(pl.DataFrame(rows), schemas.RAW_EVENT_SCHEMA).with_columns(
        pl.lit(datetime(2026, 1, 1).date()).alias("batch_date")
    )


def test_clean_events_balances_and_drops_repeats_and_already_known_ids():
    raw = frame(
        [
            event("a", "u1", "i1", 0),
            event("a", "u1", "i1", 0),
            event("b", "u1", None, 1),
            event("c", "u2", "i2", 2),
            event("d", "u2", "i1", 3),
        ]
    )
    split = transform.clean_events(
        raw, pl.Series(["i1", "i2"]), NOW, timedelta(0), existing_ids=pl.Series(["d"])
    )
    assert split.clean["event_id"].to_list() == ["a", "c"]
    assert split.quarantined["event_id"].to_list() == ["b"]
    assert split.duplicates == 2
    assert split.rows_in == raw.height


def test_sequences_are_newest_last_trimmed_and_ignore_non_item_events():
    rows = [event(f"e{m}", "u1", f"i{m}", m) for m in range(5)]
    rows.append(event("imp", "u1", "i9", 6, "rec_impression"))
    rows.append(event("x", "u2", "i1", 0))
    sequences = transform.build_user_sequences(frame(rows), length=3).sort("user_id")
    first = sequences.row(0, named=True)
    assert first["item_ids"] == ["i2", "i3", "i4"]
    assert (first["length"], first["total_events"]) == (3, 5)
    assert first["event_times"][-1] == first["last_event_ts"]
    assert sequences["user_id"].to_list() == ["u1", "u2"]


def test_same_timestamp_events_are_ordered_by_event_id():
    rows = [event("b", "u1", "i2", 0), event("a", "u1", "i1", 0)]
    assert transform.build_user_sequences(frame(rows), 5)["item_ids"][0].to_list() == ["i1", "i2"]


def test_item_stats_counts_the_funnel_and_keeps_items_without_events():
    rows = [
        event("1", "u1", "i1", 0),
        event("2", "u1", "i1", 1, "add_to_cart"),
        event("3", "u1", "i1", 2, "purchase"),
        event("4", "u2", "i1", 3),
        event("5", "u2", "i2", 4),
    ]
    catalog = pl.DataFrame({"item_id": ["i1", "i2", "i3"]})
    stats = {
        r["item_id"]: r for r in transform.build_item_stats(frame(rows), catalog, NOW).iter_rows(named=True)
    }
    assert (stats["i1"]["views"], stats["i1"]["carts"], stats["i1"]["purchases"], stats["i1"]["users"]) == (
        2,
        1,
        1,
        2,
    )
    assert stats["i1"]["conversion_rate"] == 0.5
    assert stats["i1"]["popularity_rank"] == 1
    assert stats["i3"]["popularity"] == 0 and stats["i3"]["first_seen"] is None


def test_catalog_keeps_history_and_the_latest_row_per_item():
    t0, t1 = datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2026, 1, 2, tzinfo=timezone.utc)
    rows = [
        {"item_id": "i1", "title": "Lamp", "price": 10.0, "updated_at": t0},
        {"item_id": "i1", "title": "Lamp", "price": 10.0, "updated_at": t0},
        {"item_id": "i1", "title": "Lamp", "price": 8.0, "updated_at": t1},
        {"item_id": "i2", "title": None, "price": 1.0, "updated_at": t0},
    ]
    tables = transform.build_catalog(schemas.conform(pl.DataFrame(rows), schemas.RAW_CATALOG_SCHEMA))
    assert tables.current.select("item_id", "price").rows() == [("i1", 8.0)]
    assert tables.history["price"].to_list() == [10.0, 8.0]
    assert tables.duplicates == 1
    assert tables.quarantined["rule"].to_list() == ["missing_title"]


def test_repeated_ids_across_batches_and_already_stored_ones():
    batches = [pl.Series(["a", "b"]), pl.Series(["c", "a"]), pl.Series(["d", "c", "e"])]
    repeats = transform.repeated_ids(batches, existing=pl.Series(["e"]))
    assert [r.to_list() for r in repeats] == [[], ["a"], ["c", "e"]]
    assert [r.to_list() for r in transform.repeated_ids([pl.Series(["x"])])] == [[]]


def test_count_repeated_ids():
    assert transform.count_repeated_ids(pl.LazyFrame({"event_id": ["a", "b", "a", "c", "b", "a"]})) == 2
    assert transform.count_repeated_ids(pl.LazyFrame({"event_id": ["a", "b"]})) == 0


def test_repeated_ids_compare_strings_when_hashes_collide(monkeypatch):
    # Every id hashes alike: only the string comparison tells repeats from collisions.
    monkeypatch.setattr(
        pl.Series, "hash", lambda self, seed=0: pl.Series(self.name, [7] * self.len(), pl.UInt64)
    )
    batches = [pl.Series(["a", "b"]), pl.Series(["c", "a"]), pl.Series(["b", "d"])]
    repeats = transform.repeated_ids(batches, existing=pl.Series(["d"]))
    assert [r.to_list() for r in repeats] == [[], ["a"], ["b", "d"]]
