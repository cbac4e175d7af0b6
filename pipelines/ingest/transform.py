"""The ingest transformations in plain Polars: what the assets and the benchmark both run.

No Dagster here: each function takes frames and returns frames, so it is tested and
measured without the orchestrator.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from data_contracts import adapters, rules, schemas
from data_contracts.settings import Settings

# Order of events with the same timestamp (e.g. every line of one invoice): by event id,
# so sequences are deterministic.
EVENT_ORDER = ["user_id", "ts", "event_id"]


def landed_event_files(settings: Settings, batch_date: str) -> list[Path]:
    """The files that landed for one day: landing/events/<YYYY-MM-DD>/*."""
    folder = settings.events_landing / batch_date
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in adapters.EVENT_SUFFIXES)


def landed_batches(settings: Settings) -> list[str]:
    """Every landing day that has files."""
    root = settings.events_landing
    if not root.is_dir():
        return []
    days = []
    for folder in sorted(root.iterdir()):
        try:
            date.fromisoformat(folder.name)
        except ValueError:
            continue
        if landed_event_files(settings, folder.name):
            days.append(folder.name)
    return days


def landed_catalog_files(settings: Settings) -> list[Path]:
    """Catalog files, plus event files whose format also describes items (e.g. Online Retail)."""
    files: list[Path] = []
    if settings.catalog_landing.is_dir():
        files += sorted(
            p
            for p in settings.catalog_landing.iterdir()
            if p.is_file() and p.suffix.lower() in adapters.EVENT_SUFFIXES
        )
    for batch in landed_batches(settings):
        files += [
            p
            for p in landed_event_files(settings, batch)
            if adapters.sniff_format(p) in adapters.FORMATS_WITH_ITEMS
        ]
    return files


def read_raw_events(batch: str, files: list[Path]) -> tuple[pl.DataFrame, dict[str, int]]:
    """One landing day's files as canonical raw rows with a batch_date column, and the rows of each."""
    frames = [adapters.adapt_file(path).events for path in files]
    rows = {str(path): frame.height for path, frame in zip(files, frames, strict=True)}
    if not frames:
        frame = schemas.empty(schemas.RAW_EVENT_SCHEMA)
    else:
        frame = pl.concat(frames, how="vertical")
    return frame.with_columns(pl.lit(date.fromisoformat(batch)).alias("batch_date")), rows


def read_raw_catalog(files: Iterable[Path]) -> pl.DataFrame:
    frames = [adapters.adapt_file(path).catalog for path in files]
    if not frames:
        return schemas.empty(schemas.RAW_CATALOG_SCHEMA)
    return pl.concat(frames, how="vertical")


@dataclass
class EventSplit:
    """One ingest of raw events: rows_in = clean + quarantined + duplicates."""

    clean: pl.DataFrame
    quarantined: pl.DataFrame
    duplicates: int

    @property
    def rows_in(self) -> int:
        return self.clean.height + self.quarantined.height + self.duplicates


def clean_events(
    raw: pl.DataFrame,
    known_items: pl.Series | None,
    now: datetime,
    future_skew: timedelta,
    existing_ids: pl.Series | None = None,
) -> EventSplit:
    """Quarantine rows that break the contract, then drop repeated event ids.

    ``existing_ids`` are event ids already clean in other batches: a row repeating one is a
    duplicate too, so re-landing a file never doubles the events table.
    """
    split = rules.apply_rules(raw, rules.event_rules(now, future_skew, known_items))
    passed = split.clean
    clean = passed.filter(pl.col("event_id").is_first_distinct())  # unique(keep="first"), faster
    if existing_ids is not None and existing_ids.len():
        clean = clean.filter(~pl.col("event_id").is_in(existing_ids.implode()))
    keep = [c for c in (*schemas.EVENT_COLUMNS, "batch_date") if c in clean.columns]
    return EventSplit(clean.select(keep), split.quarantined, passed.height - clean.height)


@dataclass
class CatalogTables:
    current: pl.DataFrame
    history: pl.DataFrame
    quarantined: pl.DataFrame
    duplicates: int


def build_catalog(raw: pl.DataFrame) -> CatalogTables:
    """Current row per item (latest updated_at) and every distinct version, oldest first."""
    split = rules.apply_rules(raw, rules.catalog_rules())
    versions = split.clean.select(schemas.CATALOG_COLUMNS)
    history = versions.unique(maintain_order=True).sort(["item_id", "updated_at"], maintain_order=True)
    current = history.group_by("item_id", maintain_order=True).last().sort("item_id")
    return CatalogTables(current, history, split.quarantined, versions.height - history.height)


def build_user_sequences(events: pl.LazyFrame | pl.DataFrame, length: int) -> pl.DataFrame:
    """Each user's last ``length`` item events, newest last.

    Sorting happens inside each user's group, so the streaming engine never sorts the
    whole table at once.
    """
    event = pl.struct("ts", "event_id", "item_id", "event_type")
    recent = event.sort_by("ts", "event_id").tail(length)
    return (
        events.lazy()
        .filter(pl.col("event_type").is_in(schemas.ITEM_EVENT_TYPES))
        .group_by("user_id")
        .agg(
            recent.alias("recent"),
            pl.len().cast(pl.Int64).alias("total_events"),
            pl.col("ts").max().alias("last_event_ts"),
        )
        .select(
            "user_id",
            pl.col("recent").list.eval(pl.element().struct.field("item_id")).alias("item_ids"),
            pl.col("recent").list.eval(pl.element().struct.field("event_type")).alias("event_types"),
            pl.col("recent").list.eval(pl.element().struct.field("ts")).alias("event_times"),
            pl.col("recent").list.len().cast(pl.Int64).alias("length"),
            "total_events",
            "last_event_ts",
        )
        .sort("user_id")
        .collect(engine="streaming")
    )


def id_hashes(ids: pl.Series) -> pl.Series:
    """The 64-bit hashes ``repeated_ids`` compares first."""
    return ids.hash(seed=0)


def repeated_ids(
    batches: list[pl.Series], existing: pl.Series | None = None, batch_hashes: list[pl.Series] | None = None
) -> list[pl.Series]:
    """For each batch's ids (in order), the ids already seen in ``existing`` or an earlier batch.

    Ids are compared by a 64-bit hash first (cheap on millions of rows); only rows whose
    hash repeats are compared as strings, so a hash collision never drops an event.
    ``batch_hashes``: ``id_hashes`` of each batch, when the caller has them already.
    """
    sources = ([existing] if existing is not None and existing.len() else []) + list(batches)
    skipped = len(sources) - len(batches)  # 1 when `existing` leads
    empty = pl.Series("event_id", [], pl.String)
    if not sources:
        return []
    ids = pl.concat([s.cast(pl.String).rename("event_id") for s in sources], rechunk=False)
    if batch_hashes is None:
        batch_hashes = [id_hashes(b) for b in batches]
    hashes = pl.concat([id_hashes(s) for s in sources[:skipped]] + list(batch_hashes), rechunk=False)
    later = hashes.filter(~hashes.is_first_distinct())
    if later.is_empty():
        return [empty] * len(batches)
    rows = hashes.is_in(later.unique().implode()).arg_true()
    suspects = pl.DataFrame({"row": rows, "event_id": ids.gather(rows)})
    repeats = suspects.filter(~pl.col("event_id").is_first_distinct())
    ends = np.cumsum([s.len() for s in sources])
    source = np.searchsorted(ends, repeats["row"].to_numpy(), side="right") - skipped
    by_batch = repeats.with_columns(pl.Series("batch", source))
    return [by_batch.filter(pl.col("batch") == i)["event_id"] for i in range(len(batches))]


def count_repeated_ids(events: pl.LazyFrame) -> int:
    """How many event ids occur more than once (hash first, strings only for suspects)."""
    hashes = events.select(pl.col("event_id").hash(seed=0))  # as id_hashes
    if hashes.select(pl.len() - pl.col("event_id").n_unique()).collect().item() == 0:
        return 0  # no 64-bit hash repeats, so no id repeats: the usual case, in one cheap pass
    hashed = events.select(pl.col("event_id"), pl.col("event_id").hash(seed=0).alias("hash"))
    suspects = hashed.filter(pl.col("hash").is_duplicated()).collect()
    return suspects.group_by("event_id").len().filter(pl.col("len") > 1).height


def build_item_stats(
    events: pl.LazyFrame | pl.DataFrame, catalog: pl.DataFrame, now: datetime
) -> pl.DataFrame:
    """Per catalog item: funnel counts, distinct users, popularity and its rank."""
    item_events = events.lazy().filter(pl.col("event_type").is_in(schemas.ITEM_EVENT_TYPES))
    counts = item_events.group_by("item_id").agg(
        (pl.col("event_type") == "view").sum().alias("views"),
        (pl.col("event_type") == "add_to_cart").sum().alias("carts"),
        (pl.col("event_type") == "purchase").sum().alias("purchases"),
        (pl.col("event_type") == "refund").sum().alias("refunds"),
        pl.len().alias("popularity"),
        pl.col("ts").min().alias("first_seen"),
        pl.col("ts").max().alias("last_seen"),
    )
    # Distinct users as distinct (item, user) pairs counted per item: exact, and about twice
    # as fast as n_unique inside the group-by on ten million events.
    users = item_events.select("item_id", "user_id").unique().group_by("item_id").agg(pl.len().alias("users"))
    counts, users = pl.collect_all([counts, users])
    counts = counts.join(users, on="item_id", how="left")
    stats = catalog.select("item_id").join(counts, on="item_id", how="left")
    zero = ["views", "carts", "purchases", "refunds", "users", "popularity"]
    stats = stats.with_columns(pl.col(zero).fill_null(0).cast(pl.Int64))
    return (
        stats.with_columns(
            pl.col("popularity").rank("ordinal", descending=True).cast(pl.Int64).alias("popularity_rank"),
            pl.when(pl.col("views") > 0)
            .then(pl.col("purchases") / pl.col("views"))
            .otherwise(0.0)
            .alias("conversion_rate"),
            pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("updated_at"),
        )
        .sort("popularity_rank")
        .select(list(schemas.ITEM_STATS_SCHEMA))
    )
