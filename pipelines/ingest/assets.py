"""Ingest assets: landed files → raw tables → contract checks → clean tables and sequences."""

import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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
    DailyPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)
from dagster_duckdb import DuckDBResource

from data_contracts import contracts, warehouse
from data_contracts.adapters import LandingFileError
from data_contracts.settings import Settings
from pipelines.ingest import transform
from pipelines.resources import ShopSettings

# Single-run backfills (one run for a range of days) are what makes ingest fast; the
# parameter is marked beta, which is no news to the user of every command.
warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")

GROUP = "ingest"
daily = DailyPartitionsDefinition(start_date=Settings.from_env().partition_start, end_offset=1)


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


@asset(group_name=GROUP, partitions_def=daily, backfill_policy=BackfillPolicy.single_run())
def raw_events(
    context: AssetExecutionContext, warehouse_db: DuckDBResource, settings: ShopSettings
) -> MaterializeResult:
    """Every row of the event files landed on a day, in canonical form with its source."""
    contracts.prewarm()
    config = settings.get()
    rows: dict[str, int] = {}
    with warehouse_db.get_connection() as conn, warehouse.transaction(conn):
        writer = warehouse.partition_writer(conn, "raw_events", "batch_date")

        def land(key: str) -> dict[str, int]:
            raw, file_rows = transform.read_raw_events(key, transform.landed_event_files(config, key))
            writer.write(key, raw)
            return file_rows

        try:
            for file_rows in by_day(land, context.partition_keys):
                rows.update(file_rows)
        except LandingFileError as exc:
            raise Failure(description=str(exc)) from exc
    return MaterializeResult(
        metadata={
            "rows": sum(rows.values()),
            "files": MetadataValue.json(rows),
        }
    )


@asset(group_name=GROUP)
def raw_catalog(warehouse_db: DuckDBResource, settings: ShopSettings) -> MaterializeResult:
    """Every landed catalog row (catalog files and items described by event files)."""
    contracts.prewarm()
    files = transform.landed_catalog_files(settings.get())
    try:
        raw = transform.read_raw_catalog(files)
    except LandingFileError as exc:
        raise Failure(description=str(exc)) from exc
    with warehouse_db.get_connection() as conn, warehouse.transaction(conn):
        warehouse.replace_table(conn, "raw_catalog", raw)
    return MaterializeResult(metadata={"rows": raw.height, "files": len(files)})


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


_EVENT_DEPS = [raw_events, AssetKey("catalog")]


@multi_asset(
    partitions_def=daily,
    backfill_policy=BackfillPolicy.single_run(),
    specs=[
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
        _contract_spec("events", "events"),
        AssetCheckSpec(
            "rows_balance",
            asset="events",
            blocking=True,
            description="rows_in = rows_clean + rows_quarantined + rows_duplicate, and event_id unique in the table",
        ),
    ],
)
def events(context: AssetExecutionContext, warehouse_db: DuckDBResource, settings: ShopSettings):
    """Apply the event contract: clean rows to events, the rest to quarantine_events."""
    config = settings.get()
    keys = _keys(context)
    now = datetime.now(timezone.utc)
    sample_per_batch = -(-config.contract_sample_rows // len(keys))
    with warehouse_db.get_connection() as conn:
        known = warehouse.read(conn, "SELECT item_id FROM catalog")["item_id"]
        existing = None
        if warehouse.table_exists(conn, "events"):
            existing = warehouse.read(
                conn, "SELECT event_id FROM events WHERE batch_date NOT IN (SELECT unnest(?))", [keys]
            )["event_id"]
        with warehouse.transaction(conn):
            clean_writer = warehouse.partition_writer(conn, "events", "batch_date")
            quarantine_writer = warehouse.partition_writer(conn, "quarantine_events", "batch_date")
            counts, clean_ids, samples = [], [], []

            def clean(key: date) -> tuple[list, pl.Series, pl.Series, pl.DataFrame]:
                with conn.cursor() as cursor:  # a DuckDB connection is one thread's
                    raw = warehouse.read_partitions(cursor, "raw_events", "batch_date", [key])
                split = transform.clean_events(raw, known, now, config.future_skew())
                clean_writer.write(key, split.clean)
                quarantine_writer.write(key, split.quarantined)
                count = [key, raw.height, split.clean.height, split.quarantined.height, split.duplicates]
                sample = split.clean.sample(min(sample_per_batch, split.clean.height), seed=0)
                ids = split.clean["event_id"]
                return count, ids, transform.id_hashes(ids), sample

            # A few landing days at a time; ids repeated across days are dropped afterwards.
            hashes = []
            for count, ids, day_hashes, sample in by_day(clean, keys):
                counts.append(count)
                clean_ids.append(ids)
                hashes.append(day_hashes)
                samples.append(sample)
            for i, repeats in enumerate(transform.repeated_ids(clean_ids, existing, hashes)):
                if repeats.len():
                    row, key, repeated = counts[i], keys[i], pl.col("event_id").is_in(repeats.implode())
                    clean_writer.write(key, clean_writer.read(key).filter(~repeated))
                    samples[i] = samples[i].filter(~repeated)
                    row[2] -= repeats.len()
                    row[4] += repeats.len()
            runs = _ingest_runs(context.run_id, counts, now)
            warehouse.append(conn, "ingest_runs", runs)
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
    yield _contract_check("events", "events", pl.concat(samples), config)
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
