"""Ingest benchmark: N synthetic events through ingest, contracts and sequences.

Runs, in the same command and on the same landed files:
- platform: the Dagster ingest job (the assets, their Great Expectations checks, the
  DuckDB warehouse), exactly as `shopml ingest` runs it;
- bare: a plain Polars script doing the same transformation (canonical rows, the same
  row rules, dedup, sequences, item stats) and writing Parquet, without Dagster or GE.
Each runs in its own process so that its peak memory is its own. Prints one JSON line.

    python benchmarks/ingest.py                 # 10 million events
    python benchmarks/ingest.py --events 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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


def stage_bare(data_dir: Path) -> dict:
    """The same transformation in plain Polars: no Dagster, no Great Expectations, no DuckDB."""
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
    events = pl.scan_parquet(sorted(landing.glob("events/*/*.parquet")))
    broken = (
        pl.col("ts").is_null()
        | (pl.col("ts") > now)
        | pl.col("user_id").is_null()
        | pl.col("item_id").is_null()
        | ~pl.col("event_type").is_in(schemas.EVENT_TYPES)
        | (pl.col("price") < 0)
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
    stats = clean.group_by("item_id").agg(
        (pl.col("event_type") == "view").sum().alias("views"),
        (pl.col("event_type") == "purchase").sum().alias("purchases"),
        pl.col("user_id").n_unique().alias("users"),
        pl.len().alias("popularity"),
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
    parser.add_argument("--stage", choices=["platform", "bare"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="keep the data here and reuse it next time (default: a temporary folder)",
    )
    args = parser.parse_args()
    if args.stage:
        stage = stage_platform if args.stage == "platform" else stage_bare
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
        bare = run_stage("bare", data_dir)
        platform = run_stage("platform", data_dir)
    rows = shop.events + shop.feed_rows
    print(
        json.dumps(
            {
                "events": rows,
                "seconds": round(platform["seconds"], 2),
                "events_per_s": round(rows / platform["seconds"]),
                "peak_rss_mb": platform["peak_rss_mb"],
                "bare_polars_seconds": round(bare["seconds"], 2),
                "bare_polars_peak_rss_mb": bare["peak_rss_mb"],
                "ratio": round(platform["seconds"] / bare["seconds"], 2),
                "generate_seconds": round(generate_seconds, 2),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
