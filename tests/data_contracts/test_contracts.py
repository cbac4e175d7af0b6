from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from data_contracts import contracts


def test_a_broken_catalog_fails_the_expectations_it_breaks():
    frame = pl.DataFrame(
        {
            "item_id": ["a", "b", "b"],
            "title": ["x", None, "z"],
            "price": [1.0, -1.0, 2.0],
            "updated_at": [1, 2, 3],
            "in_stock": [True, False, True],
        }
    )
    result = contracts.validate("catalog", frame)
    assert not result.success
    failed = {(e["expectation"], e["column"]) for e in result.failed}
    assert failed == {
        ("expect_column_values_to_be_unique", "item_id"),
        ("expect_column_values_to_not_be_null", "title"),
        ("expect_column_values_to_be_between", "price"),
    }


def test_a_clean_catalog_passes_and_large_tables_are_sampled():
    frame = pl.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(1000)],
            "title": "t",
            "price": 1.0,
            "updated_at": 1,
            "in_stock": True,
        }
    )
    result = contracts.validate("catalog", frame, sample_rows=100)
    assert result.success, result.describe()
    assert (result.rows_total, result.rows_validated) == (1000, 100)


def test_every_suite_file_loads():
    assert contracts.suite_names() == ["catalog", "events", "item_stats", "user_sequences"]
    for name in contracts.suite_names():
        assert contracts.load_suite_config(name)["expectations"]


def test_only_the_columns_a_suite_names_are_validated():
    assert contracts.columns_checked(contracts.load_suite_config("user_sequences")) == [
        "user_id",
        "item_ids",
        "last_event_ts",
        "length",
        "total_events",
    ]
    # A table-level expectation (the column set) needs every column.
    assert contracts.columns_checked(contracts.load_suite_config("events")) is None
    sequences = pl.DataFrame(
        {
            "user_id": ["u1", "u2"],
            "item_ids": [["a", "b"], ["c"]],
            "event_types": [["view", "view"], ["view"]],
            "length": [2, 1],
            "total_events": [2, 1],
            "last_event_ts": [1, 2],
        }
    )
    assert contracts.validate("user_sequences", sequences).success
    broken = contracts.validate("user_sequences", sequences.drop("total_events"))
    assert not broken.success
    assert ("expect_column_pair_values_a_to_be_greater_than_b", "total_events") in {
        (e["expectation"], e["column"]) for e in broken.failed
    }
    # Nulls in list and timestamp columns are seen through the Arrow-backed pandas frame.
    holes = sequences.with_columns(
        pl.when(pl.col("user_id") == "u2").then(None).otherwise(pl.col("item_ids")).alias("item_ids"),
        pl.Series("last_event_ts", [None, datetime(2026, 1, 1, tzinfo=UTC)]),
    )
    failed = contracts.validate("user_sequences", holes).failed
    assert {(e["column"], e["unexpected_count"]) for e in failed} == {("item_ids", 1), ("last_event_ts", 1)}


def test_a_category_matches_itself_and_its_descendants_only():
    from data_contracts.schemas import in_category

    assert in_category("Home > Kitchen", "home") and in_category("Home > Kitchen", " Home > kitchen ")
    assert not in_category("Homeware", "home") and not in_category("Home", "home > kitchen")
    assert not in_category(None, "home")
