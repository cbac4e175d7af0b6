"""Ingest benchmark: N synthetic events through ingest, contracts and sequences.

Runs, in the same command and on the same landed files:
- platform: the Dagster ingest job (the assets, their Great Expectations checks, the
  DuckDB warehouse), exactly as `shopml ingest` runs it;
- bare: a plain Polars script doing the same transformation (canonical rows, the same
  row rules, dedup, sequences, item stats) and writing Parquet, without Dagster or GE.
Each runs in its own process so that its peak memory is its own; a third process times the
mapping engine alone (detect, read, map every event file). Prints one JSON line.

    python benchmarks/ingest.py                 # 10 million events, 3 runs of each
    python benchmarks/ingest.py --events 1000000 --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def shop_config(events: int):
    from data_contracts.synthetic import ShopConfig

    days = 90
    return ShopConfig(
        users=max(100, events // 50),
        items=max(100, events // 200),
        days=days,
        events_per_day=events // days,
        start=date(2026, 6, 1),
        seed=11,
    )


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def stage_platform(data_dir: Path) -> dict:
    os.environ["SHOPML_DATA_DIR"] = str(data_dir)
    from dagster import DagsterInstance

    from data_contracts.settings import Settings
    from pipelines.commands.ingest import ingest_landed

    settings = Settings.from_env()
    settings.warehouse_path.unlink(missing_ok=True)
    shutil.rmtree(data_dir / "partitions", ignore_errors=True)
    start = time.perf_counter()
    ingest_landed(settings, instance=DagsterInstance.ephemeral())
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}


def stage_mapping(data_dir: Path) -> dict:
    """The mapping engine's own cost: every landed event file read, then mapped, in one thread.

    Detection (the header), reading (DuckDB / Parquet / JSON) and mapping (the source's
    expressions, event-id hashes) are timed apart; the platform run does the same work
    three days at a time.
    """
    from data_contracts.adapters import engine, reading, registry

    sources = registry.Sources.load(data_dir / "landing" / "sources")
    seconds = {"detect": 0.0, "read": 0.0, "map": 0.0}
    rows = 0
    for path in sorted((data_dir / "landing" / "events").glob("*/*")):
        if path.suffix.lower() not in reading.EVENT_SUFFIXES:
            continue
        start = time.perf_counter()
        source = sources.detect(path)
        read = time.perf_counter()
        frame = reading.read_table(path, source.read)
        mapped = time.perf_counter()
        rows += engine.adapt(path, source, frame).events.height
        done = time.perf_counter()
        seconds["detect"] += read - start
        seconds["read"] += mapped - read
        seconds["map"] += done - mapped
    return {**{k: round(v, 2) for k, v in seconds.items()}, "rows": rows, "peak_rss_mb": peak_rss_mb()}


def stage_bare(data_dir: Path) -> dict:
    """The same transformation in plain Polars: no Dagster, no Great Expectations, no DuckDB.

    Same input (every landed Parquet and CSV event file), same canonical form (ids trimmed,
    blanks as nulls, event types lower-case), same rules, dedup, sequences and item stats.
    It keeps no raw copy, no lineage columns and no per-rule names, and drops the lines
    a CSV reader cannot parse instead of quarantining them.
    """
    import polars as pl

    from data_contracts import schemas

    start = time.perf_counter()
    landing = data_dir / "landing"
    out = data_dir / "bare"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    now = datetime.now(timezone.utc) + timedelta(minutes=10)
    catalog = (
        pl.scan_parquet(sorted(landing.glob("catalog/*.parquet")))
        .filter(pl.col("item_id").is_not_null() & pl.col("title").is_not_null() & (pl.col("price") >= 0))
        .sort("updated_at")
        .group_by("item_id")
        .last()
        .collect()
    )
    ids = ["event_id", "user_id", "item_id", "session_id", "source"]
    csv = [
        pl.scan_csv(path, infer_schema=False, truncate_ragged_lines=True, ignore_errors=True).select(
            pl.col("ts").str.to_datetime(time_zone="UTC", strict=False),
            pl.col("quantity").cast(pl.Int64, strict=False),
            pl.col("price").cast(pl.Float64, strict=False),
            *[c for c in ids if c != "source"],
            "source",
            "event_type",
        )
        for path in sorted(landing.glob("events/*/*.csv"))
    ]
    parquet = pl.scan_parquet(sorted(landing.glob("events/*/*.parquet")))
    columns = [
        "event_id",
        "ts",
        "user_id",
        "item_id",
        "event_type",
        "session_id",
        "quantity",
        "price",
        "source",
    ]
    events = pl.concat([parquet.select(columns), *[f.select(columns) for f in csv]], how="vertical_relaxed")
    text = {c: pl.col(c).str.strip_chars() for c in ids}
    events = events.with_columns(
        *[pl.when(t == "").then(None).otherwise(t).alias(c) for c, t in text.items()],
        pl.col("event_type").str.strip_chars().str.to_lowercase(),
    )
    broken = (
        pl.col("event_id").is_null()
        | pl.col("ts").is_null()
        | (pl.col("ts") > now)
        | (pl.col("ts") < schemas.EARLIEST_TS)
        | pl.col("user_id").is_null()
        | pl.col("item_id").is_null()
        | ~pl.col("event_type").is_in(schemas.EVENT_TYPES)
        | (pl.col("price") < 0)
        | (pl.col("quantity") < 0)
        | ~pl.col("item_id").is_in(catalog["item_id"].implode())
    ).fill_null(False)
    marked = events.with_columns(broken.alias("broken")).collect()
    marked.filter(pl.col("broken")).write_parquet(out / "quarantine.parquet")
    clean = (
        marked.filter(~pl.col("broken")).drop("broken").unique("event_id", keep="first", maintain_order=True)
    )
    clean.write_parquet(out / "events.parquet")
    sequences = (
        clean.lazy()
        .filter(pl.col("event_type").is_in(schemas.ITEM_EVENT_TYPES))
        .sort(["user_id", "ts", "event_id"])
        .group_by("user_id", maintain_order=True)
        .agg(pl.col("item_id").tail(50), pl.col("event_type").tail(50), pl.col("ts").tail(50), pl.len())
        .collect()
    )
    sequences.write_parquet(out / "user_sequences.parquet")
    stats = (
        clean.lazy()
        .filter(pl.col("event_type").is_in(schemas.ITEM_EVENT_TYPES))
        .group_by("item_id")
        .agg(
            *[
                (pl.col("event_type") == t).sum().alias(t)
                for t in ("view", "add_to_cart", "purchase", "refund")
            ],
            pl.col("user_id").n_unique().alias("users"),
            pl.len().alias("popularity"),
            pl.col("ts").min().alias("first_seen"),
            pl.col("ts").max().alias("last_seen"),
        )
        .collect()
    )
    stats = catalog.select("item_id").join(stats, on="item_id", how="left").fill_null(0)
    stats = stats.with_columns(
        pl.col("popularity").rank("ordinal", descending=True).alias("popularity_rank"),
        (pl.col("purchase") / pl.col("view")).fill_nan(0.0).alias("conversion_rate"),
    )
    stats.write_parquet(out / "item_stats.parquet")
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(), "clean": clean.height}


def run_stage(stage: str, data_dir: Path) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--stage", stage, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--stage", choices=["platform", "bare", "mapping"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="keep the data here and reuse it next time (default: a temporary folder)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each, alternating bare and platform; medians are reported (default 3)",
    )
    args = parser.parse_args()
    if args.stage:
        stage = {"platform": stage_platform, "bare": stage_bare, "mapping": stage_mapping}[args.stage]
        print(json.dumps(stage(args.data_dir)))
        return

    from data_contracts.synthetic import generate_shop

    with tempfile.TemporaryDirectory(prefix="shopml-bench-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        start = time.perf_counter()
        summary_file = data_dir / "landing" / "synthetic_shop.json"
        if (
            summary_file.exists()
            and json.loads(summary_file.read_text())["config"]["events_per_day"]
            == shop_config(args.events).events_per_day
        ):
            # A kept --data-dir with the same shop: reuse it (generation is not what is measured).
            shop = SimpleNamespace(**json.loads(summary_file.read_text())["summary"])
        else:
            shop = generate_shop(shop_config(args.events), data_dir / "landing")
        generate_seconds = time.perf_counter() - start
        # Alternating on a shared machine: a slow spell hits both sides, not one.
        bare_runs, platform_runs = [], []
        for _ in range(args.repeat):
            bare_runs.append(run_stage("bare", data_dir))
            platform_runs.append(run_stage("platform", data_dir))
        mapping = run_stage("mapping", data_dir)
    rows = shop.events + shop.feed_rows
    bare = {"seconds": statistics.median(r["seconds"] for r in bare_runs)}
    platform = {"seconds": statistics.median(r["seconds"] for r in platform_runs)}
    print(
        json.dumps(
            {
                "events": rows,
                "seconds": round(platform["seconds"], 2),
                "events_per_s": round(rows / platform["seconds"]),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in platform_runs),
                "bare_polars_seconds": round(bare["seconds"], 2),
                "bare_polars_peak_rss_mb": max(r["peak_rss_mb"] for r in bare_runs),
                "ratio": round(platform["seconds"] / bare["seconds"], 2),
                "runs": args.repeat,
                "seconds_each": [round(r["seconds"], 2) for r in platform_runs],
                "bare_polars_seconds_each": [round(r["seconds"], 2) for r in bare_runs],
                # The mapping engine alone, one thread, every event file: detect the source,
                # read the file, map it (its share of the platform's seconds is at most this).
                "mapping_seconds": mapping["map"],
                "mapping_read_seconds": mapping["read"],
                "mapping_detect_seconds": mapping["detect"],
                "generate_seconds": round(generate_seconds, 2),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
