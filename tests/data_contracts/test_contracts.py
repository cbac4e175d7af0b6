from __future__ import annotations

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
