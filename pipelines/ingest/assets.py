"""Ingest assets: landed files → raw tables → contract checks → clean tables and sequences."""

import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TypeVar

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    BetaWarning,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)
from dagster_duckdb import DuckDBResource

from data_contracts import contracts, warehouse
from data_contracts.adapters import SourceError
from data_contracts.settings import Settings
from pipelines.ingest import transform
from pipelines.ingest.partitions import landing_days
from pipelines.resources import ShopSettings

# Single-run backfills (one run for a range of days) are what makes ingest fast; the
# parameter is marked beta, which is no news to the user of every command.
warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")

GROUP = "ingest"


# Landing days processed at once. Memory holds a few days, not the whole range; a single day
# (~100k rows) left one of two cores idle about a third of the time, and Polars, DuckDB
# and Parquet writes release the GIL.
DAYS_IN_FLIGHT = 3
T = TypeVar("T")
R = TypeVar("R")


def by_day(work: Callable[[T], R], keys: Sequence[T]) -> Iterator[R]:
    """``work(key)`` for every key, a few days at once; results in the order of ``keys``."""
    with ThreadPoolExecutor(DAYS_IN_FLIGHT, thread_name_prefix="ingest-day") as pool:
        yield from pool.map(work, keys)


def _keys(context: AssetExecutionContext) -> list[date]:
    return [date.fromisoformat(k) for k in context.partition_keys]


def _contract_check(name: str, asset_name: str, frame: pl.DataFrame, settings: Settings) -> AssetCheckResult:
    result = contracts.validate(name, frame, settings.contract_sample_rows)
    return AssetCheckResult(
        asset_key=asset_name,
        check_name=f"{name}_contract",
        passed=result.success,
        severity=AssetCheckSeverity.ERROR,
        description=result.describe(),
        metadata={
            "rows_total": result.rows_total,
            "rows_validated": result.rows_validated,
            "expectations": MetadataValue.json(result.expectations),
        },
    )


def _contract_spec(name: str, asset_name: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        f"{name}_contract",
        asset=asset_name,
        blocking=True,
        description=f"Great Expectations suite data_contracts/expectations/{name}.json",
    )


def _readable_name(asset_name: str) -> str:
    return {"raw_catalog": "readable_catalog_files", "raw_events": "readable_event_files"}[asset_name]


def _readable_spec(asset_name: str) -> AssetCheckSpec:
    return AssetCheckSpec(
        _readable_name(asset_name),
        asset=asset_name,
        description="Every landed file could be read; one that could not is moved to landing/_rejected/"
        " with a reason file, recorded in rejected_files and named here, and the rest is ingested",
    )


def _readable_check(asset_name: str, rejected: list[transform.RejectedFile]) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=asset_name,
        check_name=_readable_name(asset_name),
        passed=not rejected,
        severity=AssetCheckSeverity.ERROR,
        description="; ".join(f"{r.reason} (moved to {r.moved_to})" for r in rejected)
        or "every landed file was read",
        metadata={"rejected": MetadataValue.json({r.path: r.reason for r in rejected})},
    )


def _record_rejected(conn, rejected: list[transform.RejectedFile], step: str, run_id: str) -> None:
    if rejected:
        now = datetime.now(timezone.utc)
        warehouse.append(conn, "rejected_files", transform.rejected_files_frame(rejected, step, run_id, now))


@asset(group_name=GROUP, check_specs=[_readable_spec("raw_catalog")])
def raw_catalog(context: AssetExecutionContext, warehouse_db: DuckDBResource, settings: ShopSettings):
    """Every landed catalog row (catalog files and items described by event files)."""
    contracts.prewarm()
    config = settings.get()
    sources = _sources(config)
    files = transform.landed_catalog_files(config, sources)
    raw, rejected = transform.read_raw_catalog(config, files, sources)
    with warehouse_db.get_connection() as conn, warehouse.transaction(conn):
        warehouse.replace_table(conn, "raw_catalog", raw)
        _record_rejected(conn, rejected, "raw_catalog", context.run_id)
    yield MaterializeResult(metadata={"rows": raw.height, "files": len(files) - len(rejected)})
    yield _readable_check("raw_catalog", rejected)


def _sources(config: Settings):
    """The sources of the landing folder; a broken source file fails the step, naming it."""
    try:
        return transform.landed_sources(config)
    except SourceError as exc:
        raise Failure(description=str(exc)) from exc


@multi_asset(
    specs=[
        AssetSpec(
            "catalog", description="The current row of every item", group_name=GROUP, deps=[raw_catalog]
        ),
        AssetSpec(
            "catalog_history",
            description="Every distinct version of every item",
            group_name=GROUP,
            deps=[raw_catalog],
        ),
        AssetSpec(
            "quarantine_catalog",
            description="Catalog rows that broke a rule",
            group_name=GROUP,
            deps=[raw_catalog],
        ),
    ],
    check_specs=[_contract_spec("catalog", "catalog")],
)
def catalog(warehouse_db: DuckDBResource, settings: ShopSettings):
    """Current catalog, its history and its quarantine, written together."""
    with warehouse_db.get_connection() as conn:
        raw = warehouse.read(conn, "SELECT * FROM raw_catalog")
        tables = transform.build_catalog(raw)
        with warehouse.transaction(conn):
            warehouse.replace_table(conn, "catalog", tables.current)
            warehouse.replace_table(conn, "catalog_history", tables.history)
            warehouse.replace_table(conn, "quarantine_catalog", tables.quarantined)
    yield MaterializeResult(asset_key="catalog", metadata={"rows": tables.current.height})
    yield MaterializeResult(
        asset_key="catalog_history", metadata={"rows": tables.history.height, "duplicates": tables.duplicates}
    )
    yield MaterializeResult(
        asset_key="quarantine_catalog",
        metadata={"rows": tables.quarantined.height, "by_rule": _by_rule(tables.quarantined)},
    )
    yield _contract_check("catalog", "catalog", tables.current, settings.get())


def _by_rule(quarantined: pl.DataFrame) -> MetadataValue:
    counts = quarantined.group_by("rule").len().sort("len", descending=True) if quarantined.height else None
    return MetadataValue.json({} if counts is None else dict(counts.iter_rows()))


_EVENT_DEPS = [AssetKey("raw_events"), AssetKey("catalog")]


@multi_asset(
    partitions_def=landing_days,
    backfill_policy=BackfillPolicy.single_run(),
    # Any part can be materialised on its own; together, each day's rows are read once.
    can_subset=True,
    specs=[
        AssetSpec(
            "raw_events",
            description="Every row of the event files landed on a day, in canonical form with its source",
            group_name=GROUP,
        ),
        AssetSpec(
            "events", description="Clean, deduplicated shopper events", group_name=GROUP, deps=_EVENT_DEPS
        ),
        AssetSpec(
            "quarantine_events",
            description="Event rows that broke a rule, with the rule",
            group_name=GROUP,
            deps=_EVENT_DEPS,
        ),
    ],
    check_specs=[
        _readable_spec("raw_events"),
        _contract_spec("events", "events"),
        AssetCheckSpec(
            "rows_balance",
            asset="events",
            blocking=True,
            description="rows_in = rows_clean + rows_quarantined + rows_duplicate, and event_id unique in the table",
        ),
    ],
)
def event_tables(context: AssetExecutionContext, warehouse_db: DuckDBResource, settings: ShopSettings):
    """Land each day's event files in raw_events, then apply the event contract to those rows:
    clean rows to events, the rest to quarantine_events.

    Together (the ingest job) a day is read from its files once and all three tables are
    written in one transaction; events alone re-reads the stored raw_events.
    """
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    land, clean = "raw_events" in selected, "events" in selected
    if clean != ("quarantine_events" in selected):
        raise Failure(description="events and quarantine_events are written together: select both or neither")
    config = settings.get()
    keys = _keys(context)
    now = datetime.now(timezone.utc)
    sample_per_batch = -(-config.contract_sample_rows // len(keys))
    contracts.prewarm()  # the events check, or the next steps of the ingest job, need it
    sources = _sources(config) if land else None
    with warehouse_db.get_connection() as conn:
        known = existing = None
        if clean:
            known = warehouse.read(conn, "SELECT item_id FROM catalog")["item_id"]
            if warehouse.table_exists(conn, "events"):
                existing = warehouse.read(
                    conn, "SELECT event_id FROM events WHERE batch_date NOT IN (SELECT unnest(?))", [keys]
                )["event_id"]
        with warehouse.transaction(conn):
            raw_writer = warehouse.partition_writer(conn, "raw_events", "batch_date") if land else None
            clean_writer = warehouse.partition_writer(conn, "events", "batch_date") if clean else None
            quarantine_writer = (
                warehouse.partition_writer(conn, "quarantine_events", "batch_date") if clean else None
            )

            def day(key: date) -> tuple[dict[str, int], list[transform.RejectedFile], DayResult | None]:
                file_rows: dict[str, int] = {}
                rejected: list[transform.RejectedFile] = []
                if land:
                    raw, file_rows, rejected = transform.read_raw_events(
                        config,
                        key.isoformat(),
                        transform.landed_event_files(config, key.isoformat()),
                        sources,
                    )
                    raw_writer.write(key, raw)
                else:
                    with conn.cursor() as cursor:  # a DuckDB connection is one thread's
                        raw = warehouse.read_partitions(cursor, "raw_events", "batch_date", [key])
                if not clean:
                    return file_rows, rejected, None
                split = transform.clean_events(raw, known, now, config.future_skew())
                clean_writer.write(key, split.clean)
                quarantine_writer.write(key, split.quarantined)
                count = [key, raw.height, split.clean.height, split.quarantined.height, split.duplicates]
                sample = split.clean.sample(min(sample_per_batch, split.clean.height), seed=0)
                ids = split.clean["event_id"]
                return file_rows, rejected, DayResult(count, ids, transform.id_hashes(ids), sample)

            # A few landing days at a time; ids repeated across days are dropped afterwards.
            # A file that cannot be read is moved aside; the rest of its day still lands.
            rows: dict[str, int] = {}
            rejected: list[transform.RejectedFile] = []
            days: list[DayResult] = []
            for file_rows, day_rejected, result in by_day(day, keys):
                rows.update(file_rows)
                rejected += day_rejected
                if result is not None:
                    days.append(result)
            _record_rejected(conn, rejected, "raw_events", context.run_id)
            if clean:
                drop_repeated_ids(days, keys, existing, clean_writer)
                runs = _ingest_runs(context.run_id, [d.count for d in days], now)
                warehouse.append(conn, "ingest_runs", runs)
        if land:
            yield MaterializeResult(
                asset_key="raw_events",
                metadata={"rows": sum(rows.values()), "files": MetadataValue.json(rows)},
            )
            if _readable_name("raw_events") in {key.name for key in context.selected_asset_check_keys}:
                yield _readable_check("raw_events", rejected)
        if not clean:
            return
        totals = runs.select(pl.col("rows_in", "rows_clean", "rows_quarantined", "rows_duplicate").sum()).row(
            0, named=True
        )
        stored = {
            t: conn.execute(
                f"SELECT count(*) FROM {t} WHERE batch_date IN (SELECT unnest(?))", [keys]
            ).fetchone()[0]
            for t in ("raw_events", "events", "quarantine_events")
        }
        repeated_ids = transform.count_repeated_ids(warehouse.scan(conn, "events"))
    yield MaterializeResult(asset_key="events", metadata={**totals, "partitions": len(keys)})
    yield MaterializeResult(asset_key="quarantine_events", metadata={"rows": totals["rows_quarantined"]})
    checks = {key.name for key in context.selected_asset_check_keys}
    if "events_contract" in checks:
        yield _contract_check("events", "events", pl.concat([d.sample for d in days]), config)
    if "rows_balance" not in checks:
        return
    balanced = (
        stored["raw_events"] == stored["events"] + stored["quarantine_events"] + totals["rows_duplicate"]
    )
    yield AssetCheckResult(
        asset_key="events",
        check_name="rows_balance",
        passed=bool(balanced and repeated_ids == 0),
        description="rows_in = rows_clean + rows_quarantined + rows_duplicate"
        + ("" if balanced else " is broken")
        + (f"; {repeated_ids} event ids repeat in events" if repeated_ids else ""),
        metadata={**{f"{k}_stored": v for k, v in stored.items()}, **totals},
    )


@dataclass
class DayResult:
    """One landing day through the event contract."""

    count: list  # batch_date, rows_in, rows_clean, rows_quarantined, rows_duplicate
    ids: pl.Series  # clean event ids
    hashes: pl.Series  # their 64-bit hashes (transform.id_hashes)
    sample: pl.DataFrame  # clean rows for the contract check


def drop_repeated_ids(
    days: list[DayResult], keys: list[date], existing: pl.Series | None, writer: warehouse.PartitionWriter
) -> None:
    """Drop from each day's staged events the ids already seen on an earlier day or in the table."""
    repeats_by_day = transform.repeated_ids([d.ids for d in days], existing, [d.hashes for d in days])
    for day, key, repeats in zip(days, keys, repeats_by_day, strict=True):
        if repeats.len():
            repeated = pl.col("event_id").is_in(repeats.implode())
            writer.write(key, writer.read(key).filter(~repeated))
            day.sample = day.sample.filter(~repeated)
            day.count[2] -= repeats.len()
            day.count[4] += repeats.len()


def _ingest_runs(run_id: str, counts: list[list], now: datetime) -> pl.DataFrame:
    """One row per batch: how its rows were split."""
    columns = ["batch_date", "rows_in", "rows_clean", "rows_quarantined", "rows_duplicate"]
    return pl.DataFrame(counts, schema=columns, orient="row").select(
        pl.lit(run_id).alias("run_id"),
        pl.col("batch_date").cast(pl.Date),
        pl.col(columns[1:]).cast(pl.Int64),
        pl.lit(now).cast(pl.Datetime("us", "UTC")).alias("ingested_at"),
    )


@asset(
    group_name=GROUP,
    deps=[AssetKey("events")],
    check_specs=[_contract_spec("user_sequences", "user_sequences")],
)
def user_sequences(warehouse_db: DuckDBResource, settings: ShopSettings):
    """Each user's last N item events (items, event types, times), newest last."""
    config = settings.get()
    with warehouse_db.get_connection() as conn:
        sequences = transform.build_user_sequences(warehouse.scan(conn, "events"), config.sequence_length)
        with warehouse.transaction(conn):
            warehouse.replace_table(conn, "user_sequences", sequences)
    lengths = sequences["length"]
    yield MaterializeResult(
        metadata={
            "users": sequences.height,
            "mean_length": float(lengths.mean() or 0),
            "max_length": int(lengths.max() or 0),
        }
    )
    yield _contract_check("user_sequences", "user_sequences", sequences, config)


@asset(
    group_name=GROUP,
    deps=[AssetKey("events"), AssetKey("catalog")],
    check_specs=[_contract_spec("item_stats", "item_stats")],
)
def item_stats(warehouse_db: DuckDBResource, settings: ShopSettings):
    """Per item funnel counts, distinct users, popularity and its rank."""
    with warehouse_db.get_connection() as conn:
        catalog_frame = warehouse.read(conn, "SELECT item_id FROM catalog")
        stats = transform.build_item_stats(
            warehouse.scan(conn, "events"), catalog_frame, datetime.now(timezone.utc)
        )
        with warehouse.transaction(conn):
            warehouse.replace_table(conn, "item_stats", stats)
    yield MaterializeResult(
        metadata={"items": stats.height, "items_with_events": int((stats["popularity"] > 0).sum())}
    )
    yield _contract_check("item_stats", "item_stats", stats, settings.get())
