"""The offline sources: Parquet files written from the warehouse tables.

``user_history`` has one row per (user, event time) holding the user's state right after
that time: the last N items and event types, newest last, and cumulative counts. That is
what makes point-in-time retrieval correct (the row Feast picks for a timestamp never
contains a later event), and its newest row per user is exactly the warehouse's
``user_sequences`` row, which is what materialisation puts online.

Each write also records, per source, the earliest event time whose rows changed since the
previous write ("dirty since"); ``features.store.materialize`` loads only that window.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from data_contracts.schemas import ITEM_EVENT_TYPES
from features.sources import ITEM_FEATURES_FILE, USER_HISTORY_FILE

STATE_FILE = "_state.json"

USER_HISTORY_SQL = """
WITH item_events AS (
    SELECT user_id, item_id, event_type, ts, event_id,
           row_number() OVER (PARTITION BY user_id ORDER BY ts, event_id) AS n
    FROM events
    WHERE event_type IN (SELECT unnest($types)) AND user_id IS NOT NULL AND item_id IS NOT NULL
),
states AS (
    SELECT user_id, ts, n,
           list(item_id ORDER BY ts, event_id) OVER recent AS recent_item_ids,
           list(event_type ORDER BY ts, event_id) OVER recent AS recent_event_types,
           count(*) OVER so_far AS total_events,
           count(*) FILTER (WHERE event_type = 'purchase') OVER so_far AS purchases,
           count(*) FILTER (WHERE event_type = 'add_to_cart') OVER so_far AS carts,
           min(ts) OVER (PARTITION BY user_id) AS first_event_ts
    FROM item_events
    WINDOW recent AS (PARTITION BY user_id ORDER BY ts, event_id
                      ROWS BETWEEN {preceding} PRECEDING AND CURRENT ROW),
           so_far AS (PARTITION BY user_id ORDER BY ts, event_id
                      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT user_id,
       ts::TIMESTAMPTZ AS event_timestamp,
       recent_item_ids,
       recent_event_types,
       ts::TIMESTAMPTZ AS last_event_ts,
       total_events::BIGINT AS total_events,
       purchases::BIGINT AS purchases,
       carts::BIGINT AS carts,
       first_event_ts::TIMESTAMPTZ AS first_event_ts
FROM states
-- Events sharing a timestamp (lines of one invoice) become one state: the one after all of them.
QUALIFY row_number() OVER (PARTITION BY user_id, ts ORDER BY n DESC) = 1
ORDER BY user_id, event_timestamp
"""

# One current row per catalog item; popularity from item_stats (0 for items never seen).
ITEM_FEATURES_SQL = """
SELECT c.item_id,
       c.updated_at::TIMESTAMPTZ AS event_timestamp,
       c.category,
       c.brand,
       c.price::DOUBLE AS price,
       coalesce(s.popularity, 0)::BIGINT AS popularity,
       c.in_stock
FROM catalog c LEFT JOIN item_stats s USING (item_id)
ORDER BY c.item_id
"""


@dataclass(frozen=True)
class SourceWrite:
    """What one offline source write did."""

    name: str
    path: Path
    rows: int
    # Rows that are new or changed compared with the previous file (plus removed ones).
    changed_rows: int
    # Earliest event time among those rows (None: nothing changed).
    changed_since: datetime | None


def frames_connection(
    events: pl.DataFrame, catalog: pl.DataFrame, item_stats: pl.DataFrame
) -> duckdb.DuckDBPyConnection:
    """An in-memory connection exposing polars frames as the warehouse tables."""
    conn = duckdb.connect()
    for name, frame in (("events", events), ("catalog", catalog), ("item_stats", item_stats)):
        conn.register(name, frame.to_arrow())
    return conn


def write_offline_sources(
    warehouse: duckdb.DuckDBPyConnection, offline_dir: Path, sequence_length: int
) -> list[SourceWrite]:
    """Write ``user_history`` and ``item_features`` Parquet from the warehouse tables.

    ``warehouse`` holds tables (or views) ``events``, ``catalog`` and ``item_stats``; use
    ``frames_connection`` to pass polars frames instead.
    """
    if sequence_length < 1:
        raise ValueError(f"sequence_length must be >= 1, not {sequence_length}")
    offline_dir.mkdir(parents=True, exist_ok=True)
    user_history = (
        warehouse.execute(
            USER_HISTORY_SQL.format(preceding=sequence_length - 1), {"types": list(ITEM_EVENT_TYPES)}
        )
        .arrow()
        .read_all()
    )
    item_features = warehouse.execute(ITEM_FEATURES_SQL).arrow().read_all()
    writes = [
        _write(offline_dir, "user_history", USER_HISTORY_FILE, user_history),
        _write(offline_dir, "item_features", ITEM_FEATURES_FILE, item_features),
    ]
    _mark_dirty(offline_dir, writes)
    return writes


def _write(offline_dir: Path, name: str, file_name: str, table) -> SourceWrite:
    path = offline_dir / file_name
    tmp = path.with_suffix(".parquet.tmp")
    conn = duckdb.connect()
    conn.register("new_rows", table)
    conn.execute(f"COPY new_rows TO '{tmp}' (FORMAT parquet)")
    if path.exists():
        # Symmetric difference: new or changed rows, and rows that disappeared.
        changed, since = conn.execute(
            f"""
            WITH old_rows AS (SELECT * FROM read_parquet('{path}')),
                 diff AS ((SELECT * FROM new_rows EXCEPT ALL SELECT * FROM old_rows)
                          UNION ALL (SELECT * FROM old_rows EXCEPT ALL SELECT * FROM new_rows))
            SELECT count(*), min(event_timestamp) FROM diff
            """
        ).fetchone()
    else:
        changed, since = conn.execute("SELECT count(*), min(event_timestamp) FROM new_rows").fetchone()
    conn.close()
    # Replace atomically, so a materialisation never reads a half-written file.
    os.replace(tmp, path)
    return SourceWrite(name, path, table.num_rows, changed, since)


def read_state(offline_dir: Path) -> dict[str, datetime]:
    """Per source, the earliest changed event time not yet materialised."""
    path = offline_dir / STATE_FILE
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {name: datetime.fromisoformat(value) for name, value in raw.get("dirty_since", {}).items()}


def write_state(offline_dir: Path, dirty_since: dict[str, datetime]) -> None:
    path = offline_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"dirty_since": {k: v.isoformat() for k, v in dirty_since.items()}}))
    os.replace(tmp, path)


def _mark_dirty(offline_dir: Path, writes: list[SourceWrite]) -> None:
    # Keep the earliest mark: a write that is not yet materialised must not be forgotten.
    state = read_state(offline_dir)
    for write in writes:
        if write.changed_since is not None:
            previous = state.get(write.name)
            state[write.name] = (
                write.changed_since if previous is None else min(previous, write.changed_since)
            )
    write_state(offline_dir, state)
