"""The ingest transformations in plain Polars: what the assets and the benchmark both run.

No Dagster here: each function takes frames and returns frames, so it is tested and
measured without the orchestrator.
"""

from __future__ import annotations

import shutil
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


def landed_sources(settings: Settings) -> adapters.Sources:
    """The shipped sources and the shop's own (landing/sources/*.yaml)."""
    return adapters.Sources.load(settings.sources_landing)


def landed_catalog_files(settings: Settings, sources: adapters.Sources | None = None) -> list[Path]:
    """Catalog files, plus event files whose source also describes items (e.g. Online Retail).

    An event file whose source cannot be told is left to the events step, which rejects it.
    """
    sources = sources or landed_sources(settings)
    files: list[Path] = []
    if settings.catalog_landing.is_dir():
        files += sorted(
            p
            for p in settings.catalog_landing.iterdir()
            if p.is_file() and p.suffix.lower() in adapters.EVENT_SUFFIXES
        )
    for batch in landed_batches(settings):
        for path in landed_event_files(settings, batch):
            try:
                if sources.detect(path).carries_items:
                    files.append(path)
            except adapters.LandingFileError:
                continue
    return files


@dataclass(frozen=True)
class RejectedFile:
    """A landed file that could not be read at all, moved aside with its reason."""

    path: str  # where it had landed
    moved_to: str
    reason: str


def reject_file(settings: Settings, path: Path, reason: str) -> RejectedFile:
    """Move ``path`` (and its source note) to landing/_rejected/, with ``<name>.reason.txt`` beside it."""
    path = Path(path)
    try:
        relative = path.resolve().relative_to(settings.landing_dir.resolve())
    except ValueError:
        relative = Path(path.name)
    target = settings.rejected_landing / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # rejected before under the same name: keep both
        target = target.with_name(
            f"{target.stem}-{datetime.now().strftime('%Y%m%dT%H%M%S%f')}{target.suffix}"
        )
    shutil.move(path, target)
    note = path.with_name(path.name + adapters.registry.NOTE_SUFFIX)
    if note.exists():
        shutil.move(note, target.with_name(target.name + adapters.registry.NOTE_SUFFIX))
    target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
    return RejectedFile(str(path), str(target), reason)


def adapt_or_reject(
    settings: Settings, path: Path, sources: adapters.Sources
) -> tuple[adapters.AdaptedFile | None, RejectedFile | None]:
    """One landed file read with its source, or moved aside when it cannot be read at all."""
    try:
        return adapters.adapt_file(path, sources), None
    except adapters.LandingFileError as exc:
        return None, reject_file(settings, path, str(exc))


def read_raw_events(
    settings: Settings, batch: str, files: list[Path], sources: adapters.Sources | None = None
) -> tuple[pl.DataFrame, dict[str, int], list[RejectedFile]]:
    """One landing day's files as canonical raw rows with a batch_date column, the rows of
    each file, and the files that could not be read (moved aside; the others still count)."""
    sources = sources or landed_sources(settings)
    frames, rows, rejected = [], {}, []
    for path in files:
        adapted, reject = adapt_or_reject(settings, path, sources)
        if reject is not None:
            rejected.append(reject)
            continue
        frames.append(adapted.events)
        rows[str(path)] = adapted.events.height
    if not frames:
        frame = schemas.empty(schemas.RAW_EVENT_SCHEMA)
    else:
        frame = pl.concat(frames, how="vertical")
    return frame.with_columns(pl.lit(date.fromisoformat(batch)).alias("batch_date")), rows, rejected


def read_raw_catalog(
    settings: Settings, files: Iterable[Path], sources: adapters.Sources | None = None
) -> tuple[pl.DataFrame, list[RejectedFile]]:
    """Every catalog row of ``files``, and the catalog files that could not be read (moved aside).

    An unreadable event file is left where it is: the events step rejects it.
    """
    sources = sources or landed_sources(settings)
    frames, rejected = [], []
    for path in files:
        if Path(path).parent == settings.catalog_landing:
            adapted, reject = adapt_or_reject(settings, path, sources)
            if reject is not None:
                rejected.append(reject)
                continue
        else:
            try:
                adapted = adapters.adapt_file(path, sources)
            except adapters.LandingFileError:
                continue
        frames.append(adapted.catalog)
    if not frames:
        return schemas.empty(schemas.RAW_CATALOG_SCHEMA), rejected
    return pl.concat(frames, how="vertical"), rejected


def rejected_files_frame(rejected: list[RejectedFile], step: str, run_id: str, now: datetime) -> pl.DataFrame:
    """Rows of the rejected_files table."""
    return pl.DataFrame(
        {
            "file": [r.path for r in rejected],
            "moved_to": [r.moved_to for r in rejected],
            "reason": [r.reason for r in rejected],
        },
        schema={"file": pl.String, "moved_to": pl.String, "reason": pl.String},
    ).select(
        pl.lit(run_id).alias("run_id"),
        pl.lit(step).alias("step"),
        "file",
        "moved_to",
        "reason",
        pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("rejected_at"),
    )


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
