"""shopml run: the main job on embedded defaults.

Generates a synthetic shop (unless the landing folder already has files), ingests and
validates it through the Dagster assets, refreshes the feature store, trains, evaluates and
promotes both models (the settings' training profile, `quick` by default), prints the
warehouse, builds both bentos, starts both services and sends them real requests. Ends
with one JSON line: total seconds, seconds per step and peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from collections.abc import Callable

from data_contracts.settings import Settings, use_model_store
from data_contracts.synthetic import generate_shop
from pipelines.commands import generate, live
from pipelines.commands.ingest import ingest_landed, run_job
from pipelines.commands.summary import format_summary
from pipelines.ingest import transform


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fresh", action="store_true", help="delete the data folder first")
    parser.add_argument(
        "--once",
        action="store_true",
        help="stop the services after the sample requests and exit (scripts, CI)",
    )
    parser.add_argument("--no-serve", action="store_true", help="stop after training; start no service")
    generate.add_arguments(parser)


def _timed(steps: dict[str, float], name: str, fn: Callable):
    start = time.perf_counter()
    result = fn()
    steps[name] = round(time.perf_counter() - start, 2)
    print(f"[{name}] {steps[name]:.1f} s", flush=True)
    return result


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    use_model_store(settings)
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
    _timed(steps, "search", lambda: run_job(settings, "search_job"))
    _timed(steps, "feedback_loop", lambda: run_job(settings, "feedback_loop_job"))
    _timed(steps, "recommender", lambda: run_job(settings, "recommender_job"))
    _timed(steps, "support", lambda: run_job(settings, "support_job"))
    print(format_summary(settings))
    bentos = _timed(steps, "bentos", lambda: [live.build_bento(name) for name in live.PORTS])
    print("bentos:", ", ".join(bentos))
    services = [] if args.no_serve else _timed(steps, "serve", lambda: _serve(settings))
    _where_next(settings, services)
    peak_kb = max(
        resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    total = round(time.perf_counter() - started, 2)
    print(json.dumps({"seconds": total, "steps": steps, "peak_rss_mb": round(peak_kb / 1024)}), flush=True)
    if services and not args.once:
        print("services running; Ctrl-C stops them", flush=True)
        try:
            while all(s.process.poll() is None for s in services):
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    live.stop(services)
    return 0


def _serve(settings) -> list:
    """Both services, each sent a few real requests; their answers are printed."""
    services = []
    try:
        for name, try_it in (
            ("recommender", lambda s: live.try_recommender(s, _busiest_user(settings))),
            ("support", live.try_support),
        ):
            service = live.start(name, settings.data_dir / "logs")
            services.append(service)
            try_it(service)
    except Exception:
        live.stop(services)
        raise
    for service in services:
        for path, answer in service.answers:
            print(f"POST {service.url}{path} ->", json.dumps(answer)[:400])
    return services


def _busiest_user(settings) -> str:
    from data_contracts import warehouse

    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    try:
        return conn.execute(
            "SELECT user_id FROM user_sequences ORDER BY total_events DESC LIMIT 1"
        ).fetchone()[0]
    finally:
        conn.close()


def _where_next(settings, services) -> None:
    print("\nwhere to look next:")
    print(
        f"  warehouse      duckdb -readonly {settings.warehouse_path}  (README: tables and example queries)"
    )
    print("  Dagster UI     make ui  -> http://127.0.0.1:3000 (this job's runs are in dagster_home/)")
    print(f"  reports        {settings.reports_dir}/")
    for service in services:
        print(f"  {service.name:<14} {service.url}  (OpenAPI docs; log {service.log})")
