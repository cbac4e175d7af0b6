"""The DuckDB warehouse: every write goes through this module.

Writes are transactional (a failed run leaves the tables as they were) and idempotent
(replacing a partition deletes it first). Every table gets a one-line comment, so
``SELECT * FROM duckdb_tables()`` documents the warehouse for a data scientist.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl

TABLE_COMMENTS = {
    "raw_events": "Every landed event row in canonical form, with its source file and row, one batch_date per landing day",
    "events": "Clean, deduplicated shopper events (canonical schema); one row per event_id",
    "quarantine_events": "Event rows that broke a contract rule, with every rule they broke in `rule`",
    "raw_catalog": "Every landed catalog row in canonical form, with its source file and row",
    "catalog": "The current row of every item (latest updated_at)",
    "catalog_history": "Every distinct version of every item, oldest first",
    "quarantine_catalog": "Catalog rows that broke a contract rule, with every rule they broke in `rule`",
    "user_sequences": "Each user's last N item events, newest last: item ids, event types and times",
    "item_stats": "Per item: views, carts, purchases, refunds, distinct users, popularity rank, conversion",
    "ingest_runs": "One row per ingest of a partition: rows_in = rows_clean + rows_quarantined + rows_duplicate",
}


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), read_only=read_only)


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All writes inside commit together or not at all."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _comment(conn: duckdb.DuckDBPyConnection, table: str) -> None:
    comment = TABLE_COMMENTS.get(table)
    if comment is None:
        raise KeyError(f"table {table!r} has no comment in warehouse.TABLE_COMMENTS; add one")
    conn.execute(f"COMMENT ON TABLE {table} IS '{comment.replace(chr(39), chr(39) * 2)}'")


def replace_table(conn: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> int:
    """Replace ``table`` with ``frame`` (call inside ``transaction`` to group writes)."""
    conn.register("_incoming", frame.to_arrow())
    try:
        conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _incoming")
    finally:
        conn.unregister("_incoming")
    _comment(conn, table)
    return frame.height


def replace_partitions(
    conn: duckdb.DuckDBPyConnection, table: str, column: str, keys: Sequence, frame: pl.DataFrame
) -> int:
    """Delete the rows of ``keys`` in ``column`` and insert ``frame`` in their place."""
    conn.register("_incoming", frame.to_arrow())
    try:
        _create_like_incoming(conn, table)
        conn.execute(f"DELETE FROM {table} WHERE {column} IN (SELECT unnest(?))", [list(keys)])
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
    finally:
        conn.unregister("_incoming")
    return frame.height


def append(conn: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> int:
    """Append ``frame`` to ``table`` (created on first use), for logs such as ingest_runs."""
    conn.register("_incoming", frame.to_arrow())
    try:
        _create_like_incoming(conn, table)
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
    finally:
        conn.unregister("_incoming")
    return frame.height


def _create_like_incoming(conn: duckdb.DuckDBPyConnection, table: str) -> None:
    if not table_exists(conn, table):
        conn.execute(f"CREATE TABLE {table} AS SELECT * FROM _incoming LIMIT 0")
        _comment(conn, table)


def table_exists(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]).fetchone()[0]
    )


def read(conn: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pl.DataFrame:
    """Run a query; timestamps come back in UTC whatever the session's time zone."""
    frame = conn.execute(sql, params or []).pl()
    return frame.with_columns(
        pl.col(name).dt.convert_time_zone("UTC")
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None
    )


def row_count(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    if not table_exists(conn, table):
        return 0
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def summary(conn: duckdb.DuckDBPyConnection) -> list[tuple[str, int, str]]:
    """(table, rows, comment) for every table in the warehouse."""
    rows = conn.execute(
        "SELECT table_name, estimated_size, comment FROM duckdb_tables() ORDER BY table_name"
    ).fetchall()
    return [(name, row_count(conn, name), comment or "") for name, _, comment in rows]
