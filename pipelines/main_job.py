"""shopml run: the main job on embedded defaults.

Generates a synthetic shop (unless the landing folder already has files), ingests and
validates it through the Dagster assets, refreshes the feature store, and prints the
warehouse. Ends with one JSON line:
total seconds, seconds per step and peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from collections.abc import Callable

from data_contracts.settings import Settings
from data_contracts.synthetic import generate_shop
from pipelines.commands import generate
from pipelines.commands.ingest import ingest_landed, run_job
from pipelines.commands.summary import format_summary
from pipelines.ingest import transform


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fresh", action="store_true", help="delete the data folder first")
    generate.add_arguments(parser)


def _timed(steps: dict[str, float], name: str, fn: Callable):
    start = time.perf_counter()
    result = fn()
    steps[name] = round(time.perf_counter() - start, 2)
    print(f"[{name}] {steps[name]:.1f} s", flush=True)
    return result


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    started = time.perf_counter()
    steps: dict[str, float] = {}
    if args.fresh and settings.data_dir.exists():
        shutil.rmtree(settings.data_dir)
    if not transform.landed_batches(settings):
        shop = _timed(
            steps, "generate", lambda: generate_shop(generate.config_from_args(args), settings.landing_dir)
        )
        print(
            f"synthetic shop: {shop.events:,} events, {shop.bad_rows:,} broken on purpose, {shop.catalog_rows:,} items"
        )
    _timed(steps, "ingest", lambda: ingest_landed(settings))
    _timed(steps, "features", lambda: run_job(settings, "features_job"))
    _timed(steps, "feedback_loop", lambda: run_job(settings, "feedback_loop_job"))
    _timed(steps, "recommender", lambda: run_job(settings, "recommender_job"))
    print(format_summary(settings))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": round(time.perf_counter() - started, 2),
                "steps": steps,
                "peak_rss_mb": round(peak_mb),
            }
        )
    )
    return 0
