from datetime import timedelta

import polars as pl

from features.training import historical_sequences


def test_each_row_gets_the_sequence_as_it_was_then(local_store, shop):
    m = shop.minutes
    rows = pl.DataFrame(
        {
            "user_id": ["alice", "alice", "bob", "alice", "carol", "nobody", "alice"],
            "event_timestamp": [m(1.5), m(3), m(4), m(-1), m(100), m(5), m(10) - timedelta(microseconds=1)],
        }
    )
    out = historical_sequences(local_store, rows)
    assert out["user_id"].to_list() == rows["user_id"].to_list()  # input order kept
    assert out["recent_item_ids"].to_list() == [
        ["i0", "i1"],  # between events: the two before
        ["i0", "i1", "i2", "i3"],  # at an event's exact time: it is included
        ["i1", "i2", "i3"],  # both invoice lines at minute 4
        [],  # before the first event
        ["i4"],
        [],  # unknown user
        ["i1", "i2", "i3", "i4", "i5"],  # just before the cart event at minute 10, trimmed to N
    ]
    assert out["recent_event_types"][1].to_list() == ["view", "view", "view", "purchase"]
    assert out["total_events"].to_list()[:3] == [2, 4, 3]
    assert out["last_event_ts"][0] == m(1)


def test_no_event_after_the_timestamp_leaks_in(local_store, shop):
    events = shop.events().filter(pl.col("event_type") != "rec_impression")
    # Ask at every event time and just before it, for every user.
    asked = pl.concat(
        [
            events.select("user_id", pl.col("ts").alias("event_timestamp")),
            events.select("user_id", (pl.col("ts") - timedelta(microseconds=1)).alias("event_timestamp")),
        ]
    )
    out = historical_sequences(local_store, asked)
    for row in out.iter_rows(named=True):
        seen = events.filter((pl.col("user_id") == row["user_id"]) & (pl.col("ts") <= row["event_timestamp"]))
        expected = seen.sort(["ts", "event_id"])["item_id"].tail(shop.N).to_list()
        assert row["recent_item_ids"] == expected, row
