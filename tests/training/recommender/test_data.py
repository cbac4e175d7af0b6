"""Reading sequences (file and warehouse), leave-one-out splits, training windows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest

from training.recommender.data import (
    build_dataset,
    leave_one_out,
    left_pad,
    price_buckets,
    read_item_text,
    read_sasrec_file,
    training_windows,
)


def test_read_sasrec_file_keeps_order_and_string_ids(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text("7 a\n7 b\n7 c\n9 b\n9 d\n")
    data = read_sasrec_file(path)
    assert data.items == ["a", "b", "c", "d"]
    assert data.users == ["7", "9"]
    assert [s.tolist() for s in data.sequences] == [[1, 2, 3], [2, 4]]


def test_leave_one_out_split():
    from training.recommender.data import SequenceData

    data = SequenceData(
        items=list("abcdef"), users=["u", "v"], sequences=[np.array([1, 2, 3, 4, 5]), np.array([6, 1])]
    )
    split = leave_one_out(data)
    assert [s.tolist() for s in split.train] == [[1, 2, 3], [6, 1]]  # v is too short to evaluate
    assert split.valid.targets.tolist() == [4] and split.valid.histories[0].tolist() == [1, 2, 3]
    assert split.test.targets.tolist() == [5] and split.test.histories[0].tolist() == [1, 2, 3, 4]


def test_cold_items_never_reach_training(rule_data):
    data = rule_data
    split = leave_one_out(data, cold_fraction=0.1, seed=1)
    assert len(split.cold_items) == round(0.1 * data.num_items) > 0
    trained = np.concatenate(split.train)
    assert not np.isin(trained, split.cold_items).any()


def test_training_windows_and_left_pad():
    assert left_pad([np.array([1, 2, 3]), np.array([4])], 2).tolist() == [[2, 3], [0, 4]]
    inputs, targets = training_windows([np.arange(1, 6)], max_len=3)
    assert inputs.tolist() == [[2, 3, 4]] and targets.tolist() == [[3, 4, 5]]
    # With a stride, older parts of a long history become windows of their own.
    inputs, targets = training_windows([np.arange(1, 11)], max_len=3, stride=3)
    assert inputs.tolist() == [[7, 8, 9], [4, 5, 6], [1, 2, 3]]
    assert targets.tolist() == [[8, 9, 10], [5, 6, 7], [2, 3, 4]]


def test_price_buckets_and_item_text(tmp_path):
    bucket, edges = price_buckets(np.array([np.nan, 1.0, 2.0, 3.0, 4.0]), 2)
    assert bucket.tolist() == [0, 1, 1, 2, 2] and edges == [2.5]
    path = tmp_path / "text.tsv"
    path.write_text("a\tRed shoes\nb\tBlue hat\n")
    assert read_item_text(path) == {"a": "Red shoes", "b": "Blue hat"}
    path.write_text("no tab here\n")
    with pytest.raises(ValueError, match="TAB"):
        read_item_text(path)


def test_dataset_from_warehouse_tables():
    conn = duckdb.connect()
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [
        # (event_id, minutes, user, item, type)
        ("e3", 2, "u1", "B", "add_to_cart"),
        ("e1", 0, "u1", "A", "view"),
        ("e2", 1, "u1", "B", "view"),  # view then cart of B collapse to one step
        ("e4", 3, "u1", "C", "rec_impression"),  # not interest
        ("e5", 0, "u2", "C", "purchase"),
        ("e6", 1, "u2", "A", "view"),
    ]
    events = pl.DataFrame(
        {
            "event_id": [r[0] for r in rows],
            "ts": [t0 + timedelta(minutes=r[1]) for r in rows],
            "user_id": [r[2] for r in rows],
            "item_id": [r[3] for r in rows],
            "event_type": [r[4] for r in rows],
        }
    )
    catalog = pl.DataFrame(
        {
            "item_id": ["A", "B", "C", "D"],
            "title": ["Red shoes", "Blue hat", None, "Green scarf"],
            "description": ["leather", None, None, None],
            "category": ["shoes", "hats", "shoes", "scarves"],
            "price": [10.0, 20.0, None, 5.0],
            "in_stock": [True, False, True, True],
        }
    )
    conn.register("events_df", events.to_arrow())
    conn.register("catalog_df", catalog.to_arrow())
    conn.execute("CREATE TABLE events AS SELECT * FROM events_df")
    conn.execute("CREATE TABLE catalog AS SELECT * FROM catalog_df")
    data = build_dataset(conn)
    index = data.item_index()
    decoded = [[data.items[i - 1] for i in s] for s in data.sequences]
    assert dict(zip(data.users, decoded, strict=True)) == {"u1": ["A", "B"], "u2": ["C", "A"]}
    side = data.side
    assert side.category[index["A"]] == side.category[index["C"]] != side.category[index["B"]]
    assert side.price_bucket[index["C"]] == 0 and side.price_bucket[index["A"]] > 0
    assert side.text == {"A": "Red shoes. leather", "B": "Blue hat", "D": "Green scarf"}
    # D has no events yet but is in the vocabulary, so its side features can rank it.
    assert "D" in index and not any((s == index["D"]).any() for s in data.sequences)
    assert side.in_stock[index["B"]] == False  # noqa: E712


@pytest.mark.slow
def test_ml1m_file_shape(ml1m_path):
    data = read_sasrec_file(ml1m_path)
    assert len(data.users) == 6040 and data.num_items == 3416
    split = leave_one_out(data)
    assert len(split.test.targets) == 6040


def test_item_categories_from_a_json_file(tmp_path):
    from training.recommender.data import read_item_categories

    path = tmp_path / "item2attributes.json"
    # 20 items with 2 categories, one with 5: the 95th percentile gives 2 slots, so the long
    # one keeps its first two (the Amazon files list the brand first).
    mapping = {f"i{i}": [7, i % 3] for i in range(20)} | {"long": [9, 1, 2, 3, 4]}
    path.write_text(json.dumps(mapping))
    items = ["i0", "i1", "long", "unknown"]
    category, names = read_item_categories(path, items)
    assert category.shape == (5, 2) and category[0].tolist() == [0, 0]
    decode = [[names[c - 1] for c in row if c] for row in category[1:]]
    assert decode == [["7", "0"], ["7", "1"], ["9", "1"], []]
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="item2attributes.json: expected a JSON object"):
        read_item_categories(path, items)
    path.write_text("{")
    with pytest.raises(ValueError, match="item2attributes.json: cannot read item categories"):
        read_item_categories(path, items)
