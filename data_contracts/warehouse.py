"""The DuckDB warehouse: every write goes through this module.

Small tables live inside the DuckDB file. The large, day-partitioned event tables
(``PARTITIONED_TABLES``) are Parquet files, one folder per day next to the DuckDB file
(``<warehouse dir>/partitions/<table>/batch_date=YYYY-MM-DD/``), exposed in DuckDB as views
of the same name: a reader sees one warehouse either way, and writing Parquet from Polars
is several times faster than inserting into the DuckDB file.

Writes are transactional (a failed run leaves the tables as they were) and idempotent
(replacing a partition replaces it whole). Every table and view gets a one-line comment,
so ``SELECT * FROM duckdb_tables()`` / ``duckdb_views()`` document the warehouse.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import duckdb
import polars as pl

# Tables stored as Parquet partitions (by batch_date) behind a DuckDB view.
PARTITIONED_TABLES = ("raw_events", "events", "quarantine_events")
# Unpartitioned tables stored as one Parquet file behind a view: list columns insert into the
# DuckDB file several times slower than Parquet writes them.
FILE_TABLES = ("user_sequences",)

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
    "rejected_files": "Landed files that could not be read at all, with the reason; moved to landing/_rejected/",
    "served_recommendations": "Every recommendation list the service returned: items in order, scores, model version, the baseline served when no trained model beat it, fallback reason",
    "support_replies": "Every support reply the service gave: message, reply, sources, top score, handover",
    "feedback": "Thumbs up (+1) or down (-1) on a reply or a recommendation, with the reason",
    "quarantine_served_recommendations": "Served-recommendation log lines that broke a rule, with the rule",
    "served_searches": "Every product search the service answered: the query, items in order, scores, index version, whether it was personalised",
    "quarantine_served_searches": "Served-search log lines that broke a rule, with the rule",
    "quarantine_support_replies": "Support-reply log lines that broke a rule, with the rule",
    "quarantine_feedback": "Feedback log lines that broke a rule, with the rule",
    "experiment_results": "Per experiment, variant and metric (recommender: ctr, add_to_cart, purchase after a click; support: thumbs_up, handover): users, answers served, rate and 95% interval, lift over the champion with its interval and p-value, sample-ratio p-value",
}


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), read_only=read_only)


class PartitionWriter:
    """Writes partitions of one table to a staging folder; the transaction swaps them in."""

    def __init__(self, table: str, column: str | None, final: Path):
        self.table, self.column, self.final = table, column, final
        self.staging = final.parent / f".staging-{table}-{uuid.uuid4().hex[:8]}"
        self.keys: list[str] = []

    def _folder(self, key) -> str:
        return f"{self.column}={key}" if self.column else str(key)

    def _file(self, key) -> Path:
        return self.staging / self._folder(key) / "part-0.parquet"

    def write(self, key, frame: pl.DataFrame) -> None:
        """Stage ``frame`` as partition ``key`` (the partition column is implied by the folder)."""
        path = self._file(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.column:
            frame = frame.drop(self.column, strict=False)
        frame.write_parquet(path, compression="lz4", statistics=False)
        if str(key) not in self.keys:
            self.keys.append(str(key))

    def read(self, key) -> pl.DataFrame:
        return pl.read_parquet(self._file(key))

    def publish(self) -> None:
        """Swap the staged partition folders in, then drop the old ones."""
        self.final.mkdir(parents=True, exist_ok=True)
        trash = self.final.parent / f".trash-{uuid.uuid4().hex[:8]}"
        trash.mkdir()
        for key in self.keys:
            name = self._folder(key)
            if (self.final / name).exists():
                (self.final / name).rename(trash / name)
            (self.staging / name).rename(self.final / name)
        shutil.rmtree(trash)
        shutil.rmtree(self.staging, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


# Partition writers of each open transaction, by connection.
_pending: dict[int, list[PartitionWriter]] = {}


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All writes inside commit together or not at all.

    Parquet partitions are written to a staging folder and swapped in just before the
    DuckDB commit; a failure before that point leaves every table as it was.
    """
    conn.execute("BEGIN TRANSACTION")
    _pending[id(conn)] = []
    try:
        yield conn
        writers = _pending.pop(id(conn))
        for writer in writers:
            writer.publish()
    except BaseException:
        for writer in _pending.pop(id(conn), []):
            writer.discard()
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    for writer in writers:
        _create_view(conn, writer.table, writer.final, writer.column)


def _comment(conn: duckdb.DuckDBPyConnection, table: str, kind: str = "TABLE") -> None:
    comment = TABLE_COMMENTS.get(table)
    if comment is None:
        raise KeyError(f"table {table!r} has no comment in warehouse.TABLE_COMMENTS; add one")
    conn.execute(f"COMMENT ON {kind} {table} IS '{comment.replace(chr(39), chr(39) * 2)}'")


def replace_table(conn: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> int:
    """Replace ``table`` with ``frame`` (call inside ``transaction`` to group writes)."""
    if table in FILE_TABLES:
        with nullcontext() if id(conn) in _pending else transaction(conn):
            partition_writer(conn, table, None).write("all", frame)
        return frame.height
    conn.register("_incoming", frame.to_arrow())
    try:
        conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _incoming")
    finally:
        conn.unregister("_incoming")
    _comment(conn, table)
    return frame.height


def partitions_dir(conn: duckdb.DuckDBPyConnection) -> Path:
    """Where the Parquet partitions of this warehouse live: beside its DuckDB file."""
    path = conn.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()[0]
    if not path:
        raise ValueError("partitioned tables need a warehouse file, not an in-memory database")
    return Path(path).resolve().parent / "partitions"


def partition_writer(conn: duckdb.DuckDBPyConnection, table: str, column: str | None) -> PartitionWriter:
    """A writer for partitions of ``table``, published when the open transaction commits."""
    if table not in PARTITIONED_TABLES + FILE_TABLES:
        raise KeyError(f"{table!r} is not stored as Parquet ({PARTITIONED_TABLES + FILE_TABLES})")
    if id(conn) not in _pending:
        raise RuntimeError("partition writes must happen inside warehouse.transaction(conn)")
    writer = PartitionWriter(table, column, partitions_dir(conn) / table)
    _pending[id(conn)].append(writer)
    return writer


def replace_partitions(
    conn: duckdb.DuckDBPyConnection, table: str, column: str, keys: Sequence, frame: pl.DataFrame
) -> int:
    """Replace the partitions ``keys`` of ``table`` (by ``column``) with the rows of ``frame``.

    Every key gets its folder, empty keys an empty file, so a re-run never doubles a table.
    """
    with nullcontext() if id(conn) in _pending else transaction(conn):
        writer = partition_writer(conn, table, column)
        parts = frame.partition_by(column, as_dict=True, include_key=False) if frame.height else {}
        empty = frame.drop(column).clear()
        for key in keys:
            writer.write(key, parts.get((key,), empty))
    return frame.height


def _create_view(conn: duckdb.DuckDBPyConnection, table: str, folder: Path, column: str | None) -> None:
    glob = str(folder / "*" / "*.parquet").replace("'", "''")
    options = f"hive_partitioning = true, union_by_name = true, hive_types = {{'{column}': DATE}}"
    conn.execute(
        f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{glob}',"
        f" {options if column else 'hive_partitioning = false'})"
    )
    _comment(conn, table, "VIEW")


def read_partitions(conn: duckdb.DuckDBPyConnection, table: str, column: str, keys: Sequence) -> pl.DataFrame:
    """The rows of partitions ``keys`` as a Polars frame, read straight from Parquet."""
    folder = partitions_dir(conn) / table
    frames = [
        pl.read_parquet(path).with_columns(pl.lit(key).cast(pl.Date).alias(column))
        for key in keys
        if (path := folder / f"{column}={key}" / "part-0.parquet").exists()
    ]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def scan(conn: duckdb.DuckDBPyConnection, table: str) -> pl.LazyFrame:
    """A partitioned table as a Polars LazyFrame over its Parquet files (streams, never loads all)."""
    if table not in PARTITIONED_TABLES:
        raise KeyError(f"{table!r} is not a partitioned table ({PARTITIONED_TABLES})")
    files = sorted((partitions_dir(conn) / table).glob("*/part-0.parquet"))
    if not files:
        raise FileNotFoundError(f"{table} has no partitions yet under {partitions_dir(conn) / table}")
    return pl.scan_parquet(files, hive_partitioning=True, hive_schema={"batch_date": pl.Date})


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
    """True for a table or a view (the partitioned tables are views)."""
    return bool(
        conn.execute(
            "SELECT count(*) FROM (SELECT table_name AS name FROM duckdb_tables()"
            " UNION ALL SELECT view_name FROM duckdb_views() WHERE NOT internal) WHERE name = ?",
            [table],
        ).fetchone()[0]
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
        "SELECT table_name, comment FROM duckdb_tables()"
        " UNION ALL SELECT view_name, comment FROM duckdb_views() WHERE NOT internal ORDER BY 1"
    ).fetchall()
    return [(name, row_count(conn, name), comment or "") for name, comment in rows]
