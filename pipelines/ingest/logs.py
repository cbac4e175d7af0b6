"""Reading the service logs (JSON lines under landing/<kind>/<day>/) into typed tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from data_contracts import adapters, rules, schemas, warehouse
from data_contracts.landing_log import KINDS


@dataclass(frozen=True)
class LogTable:
    table: str
    schema: dict[str, pl.DataType]
    key: str  # unique per record: a repeated key is a duplicate line

    @property
    def description(self) -> str:
        return warehouse.TABLE_COMMENTS[self.table]


LOG_TABLES = {
    "served": LogTable("served_recommendations", schemas.SERVED_RECOMMENDATION_SCHEMA, "rec_id"),
    "searches": LogTable("served_searches", schemas.SERVED_SEARCH_SCHEMA, "search_id"),
    "replies": LogTable("support_replies", schemas.SUPPORT_REPLY_SCHEMA, "reply_id"),
    "feedback": LogTable("feedback", schemas.FEEDBACK_SCHEMA, "feedback_id"),
}


@dataclass
class LogRead:
    clean: pl.DataFrame
    quarantined: pl.DataFrame
    duplicates: int
    files: int

    @property
    def rows_in(self) -> int:
        return self.clean.height + self.quarantined.height + self.duplicates


def _typed(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Text columns → the schema's types; values that fail to parse are named in ``reject_reason``."""
    exprs, failures = [], []
    for name, dtype in schema.items():
        if name not in frame.columns:
            exprs.append(pl.lit(None, dtype).alias(name))
            continue
        text = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            parsed = adapters.parse_ts(name)
        elif isinstance(dtype, pl.List):
            parsed = text.str.json_decode(dtype)
        elif dtype == pl.Boolean():
            parsed = text.str.to_lowercase().replace_strict({"true": True, "false": False}, default=None)
        elif dtype == pl.String():
            parsed = text
        else:
            parsed = text.cast(dtype, strict=False)
        exprs.append(parsed.alias(name))
        failures.append(pl.when(text.is_not_null() & parsed.is_null()).then(pl.lit(name)))
    failed = pl.concat_str(failures, separator=",", ignore_nulls=True)
    reason = pl.coalesce(pl.col("reject_reason"), pl.when(failed != "").then("unparseable: " + failed))
    # One with_columns: every expression sees the text columns, before they are typed.
    return frame.with_columns(*exprs, reason.alias("reject_reason"))


def read_log(landing_dir: Path, kind: str) -> LogRead:
    """Every line of every file of one kind: typed clean rows, quarantined rows, duplicates."""
    spec = LOG_TABLES[kind]
    files = sorted((Path(landing_dir) / KINDS[kind]).glob("*/*.jsonl"))
    empty = schemas.empty(spec.schema)
    frames = []
    for path in files:
        if path.stat().st_size == 0:
            continue
        text = adapters.read_table(path).with_columns(pl.lit(str(path)).alias("source_file"))
        for column in spec.schema:
            if column not in text.columns:
                text = text.with_columns(pl.lit(None, pl.String).alias(column))
        frames.append(text)
    if not frames:
        return LogRead(empty, empty.with_columns(pl.lit(None, pl.String).alias("rule")), 0, 0)
    raw = pl.concat(frames, how="diagonal_relaxed")
    typed = _typed(raw, spec.schema)
    checks = [
        ("rejected_by_reader", pl.col("reject_reason").is_not_null()),
        (f"missing_{spec.key}", pl.col(spec.key).is_null() & pl.col("reject_reason").is_null()),
        ("missing_ts", pl.col("ts").is_null() & pl.col("reject_reason").is_null()),
    ]
    if kind == "feedback":
        checks.append(("rating_not_plus_or_minus_one", ~pl.col("rating").is_in([1, -1])))
        checks.append(("unknown_target_kind", ~pl.col("target_kind").is_in(["reply", "recommendation"])))
    split = rules.apply_rules(typed, checks)
    clean = split.clean.unique(subset=spec.key, keep="first", maintain_order=True).select(list(spec.schema))
    # Quarantined rows keep their text as it came, not what parsing made of it.
    where = ["source_file", "source_row"]
    quarantined = raw.select(*spec.schema, *where, "raw_line", "reject_reason").join(
        split.quarantined.select(*where, "rule"), on=where, how="inner", maintain_order="right"
    )
    return LogRead(clean.sort("ts"), quarantined, split.clean.height - clean.height, len(files))


def create_ctr_view(conn: duckdb.DuckDBPyConnection) -> None:
    """Click-through rate per model version: served lists joined to rec_click events."""
    if not warehouse.table_exists(conn, "events"):
        return
    conn.execute(
        """
        CREATE OR REPLACE VIEW ctr_by_model_version AS
        SELECT s.model_version,
               count(DISTINCT s.rec_id) AS recommendations,
               count(DISTINCT e.rec_id) AS clicked,
               round(count(DISTINCT e.rec_id) / count(DISTINCT s.rec_id), 4) AS ctr
        FROM served_recommendations s
        LEFT JOIN events e ON e.rec_id = s.rec_id AND e.event_type = 'rec_click'
        GROUP BY s.model_version
        """
    )
    conn.execute(
        "COMMENT ON VIEW ctr_by_model_version IS 'Share of served recommendation lists with a rec_click, per model version'"
    )


def create_search_ctr_view(conn: duckdb.DuckDBPyConnection) -> None:
    """Click-through rate of search results per day and index version: searches with a rec_click."""
    if not warehouse.table_exists(conn, "events"):
        return
    conn.execute(
        """
        CREATE OR REPLACE VIEW search_ctr AS
        SELECT s.ts::DATE AS day,
               s.index_version,
               s.personalised,
               count(DISTINCT s.search_id) AS searches,
               count(DISTINCT e.rec_id) AS clicked,
               round(count(DISTINCT e.rec_id) / count(DISTINCT s.search_id), 4) AS ctr
        FROM served_searches s
        LEFT JOIN events e ON e.rec_id = s.search_id AND e.event_type = 'rec_click'
        GROUP BY ALL
        ORDER BY day, index_version, personalised
        """
    )
    conn.execute(
        "COMMENT ON VIEW search_ctr IS 'Share of served search result lists with a rec_click (rec_id = search_id), per day, index version and personalisation'"
    )
