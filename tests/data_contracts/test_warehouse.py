from __future__ import annotations

import polars as pl
import pytest

from data_contracts import warehouse


@pytest.fixture
def conn(tmp_path):
    connection = warehouse.connect(tmp_path / "w.duckdb")
    yield connection
    connection.close()


def test_replacing_a_partition_twice_does_not_double_it(conn):
    frame = pl.DataFrame({"batch_date": ["a", "a", "b"], "x": [1, 2, 3]})
    warehouse.replace_partitions(conn, "events", "batch_date", ["a", "b"], frame)
    warehouse.replace_partitions(conn, "events", "batch_date", ["a"], frame.filter(pl.col("batch_date") == "a"))
    assert warehouse.row_count(conn, "events") == 3


def test_a_failed_transaction_leaves_tables_as_they_were(conn):
    warehouse.replace_table(conn, "catalog", pl.DataFrame({"item_id": ["i1"]}))
    with pytest.raises(RuntimeError), warehouse.transaction(conn):
        warehouse.replace_table(conn, "catalog", pl.DataFrame({"item_id": ["i2", "i3"]}))
        warehouse.replace_table(conn, "catalog_history", pl.DataFrame({"item_id": ["i2"]}))
        raise RuntimeError("the run failed half way")
    assert warehouse.read(conn, "SELECT * FROM catalog")["item_id"].to_list() == ["i1"]
    assert not warehouse.table_exists(conn, "catalog_history")


def test_every_table_gets_its_comment_and_unknown_tables_are_refused(conn):
    warehouse.replace_table(conn, "events", pl.DataFrame({"x": [1]}))
    assert warehouse.summary(conn) == [("events", 1, warehouse.TABLE_COMMENTS["events"])]
    with pytest.raises(KeyError, match="has no comment"):
        warehouse.replace_table(conn, "scratch", pl.DataFrame({"x": [1]}))
