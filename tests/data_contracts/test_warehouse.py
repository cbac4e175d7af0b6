from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from data_contracts import warehouse


@pytest.fixture
def conn(tmp_path):
    connection = warehouse.connect(tmp_path / "w.duckdb")
    yield connection
    connection.close()


A, B = date(2026, 1, 1), date(2026, 1, 2)


def test_replacing_a_partition_twice_does_not_double_it(conn):
    frame = pl.DataFrame({"batch_date": [A, A, B], "x": [1, 2, 3]})
    warehouse.replace_partitions(conn, "events", "batch_date", [A, B], frame)
    warehouse.replace_partitions(conn, "events", "batch_date", [A], frame.filter(pl.col("batch_date") == A))
    assert warehouse.row_count(conn, "events") == 3
    assert warehouse.read_partitions(conn, "events", "batch_date", [B])["x"].to_list() == [3]
    # An emptied partition stays, empty, so the view still reads.
    warehouse.replace_partitions(conn, "events", "batch_date", [B], frame.clear())
    assert warehouse.read(conn, "SELECT x FROM events ORDER BY x")["x"].to_list() == [1, 2]


def test_a_failed_transaction_leaves_partitions_as_they_were(conn):
    frame = pl.DataFrame({"batch_date": [A], "x": [1]})
    warehouse.replace_partitions(conn, "events", "batch_date", [A], frame)
    with pytest.raises(RuntimeError), warehouse.transaction(conn):
        warehouse.replace_partitions(conn, "events", "batch_date", [A], frame.with_columns(x=pl.lit(9)))
        raise RuntimeError("the run failed half way")
    assert warehouse.read(conn, "SELECT x FROM events")["x"].to_list() == [1]
    assert not list(warehouse.partitions_dir(conn).glob(".staging-*"))


def test_a_failed_transaction_leaves_tables_as_they_were(conn):
    warehouse.replace_table(conn, "catalog", pl.DataFrame({"item_id": ["i1"]}))
    with pytest.raises(RuntimeError), warehouse.transaction(conn):
        warehouse.replace_table(conn, "catalog", pl.DataFrame({"item_id": ["i2", "i3"]}))
        warehouse.replace_table(conn, "catalog_history", pl.DataFrame({"item_id": ["i2"]}))
        raise RuntimeError("the run failed half way")
    assert warehouse.read(conn, "SELECT * FROM catalog")["item_id"].to_list() == ["i1"]
    assert not warehouse.table_exists(conn, "catalog_history")


def test_every_table_gets_its_comment_and_unknown_tables_are_refused(conn):
    warehouse.replace_table(conn, "catalog", pl.DataFrame({"x": [1]}))
    warehouse.replace_partitions(
        conn, "events", "batch_date", [A], pl.DataFrame({"batch_date": [A], "x": [1]})
    )
    assert warehouse.summary(conn) == [
        ("catalog", 1, warehouse.TABLE_COMMENTS["catalog"]),
        ("events", 1, warehouse.TABLE_COMMENTS["events"]),
    ]
    with pytest.raises(KeyError, match="has no comment"):
        warehouse.replace_table(conn, "scratch", pl.DataFrame({"x": [1]}))
