from __future__ import annotations

from dataclasses import replace

import polars as pl
from testdata import TINY_SHOP

from data_contracts.synthetic import generate_shop


def events(landing) -> pl.DataFrame:
    return pl.read_parquet(sorted(landing.glob("events/*/*.parquet")))


def test_same_seed_same_shop_and_another_seed_another(tmp_path):
    generate_shop(TINY_SHOP, tmp_path / "a")
    generate_shop(TINY_SHOP, tmp_path / "b")
    generate_shop(replace(TINY_SHOP, seed=99), tmp_path / "c")
    assert events(tmp_path / "a").equals(events(tmp_path / "b"))
    assert not events(tmp_path / "a").equals(events(tmp_path / "c"))


def test_one_folder_per_day_and_a_funnel(tmp_path):
    summary = generate_shop(replace(TINY_SHOP, bad_share=0.0), tmp_path)
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == [
        "2026-01-05",
        "2026-01-06",
        "2026-01-07",
    ]
    frame = events(tmp_path)
    assert frame.height == summary.events
    counts = dict(frame.group_by("event_type").len().iter_rows())
    assert counts["view"] > counts["add_to_cart"] > counts["purchase"] > 0
    # Every purchase follows a view of the same item in the same session.
    bought = frame.filter(pl.col("event_type") == "purchase").select("session_id", "item_id")
    viewed = frame.filter(pl.col("event_type") == "view").select("session_id", "item_id")
    assert bought.join(viewed, on=["session_id", "item_id"], how="anti").height == 0


def test_popularity_is_long_tailed(tmp_path):
    generate_shop(replace(TINY_SHOP, items=200, events_per_day=3000, bad_share=0.0), tmp_path)
    counts = events(tmp_path).group_by("item_id").len().sort("len", descending=True)["len"]
    top_tenth = counts.head(len(counts) // 10).sum()
    assert top_tenth / counts.sum() > 0.3


def test_bad_rows_of_every_kind(tmp_path):
    summary = generate_shop(replace(TINY_SHOP, bad_share=0.05), tmp_path)
    frame = events(tmp_path)
    assert summary.bad_rows > 0 and summary.malformed_lines > 0
    assert frame["user_id"].null_count() > 0
    assert frame["item_id"].null_count() > 0
    assert (frame["price"] < 0).any()
    assert frame["item_id"].str.starts_with("ghost-").any()
    assert (frame["event_type"] == "clicked").any()
    assert frame["event_id"].is_duplicated().any()
    assert (frame["ts"].dt.year() > 2100).any()
    assert list(tmp_path.glob("events/*/partner-feed-*.csv"))
