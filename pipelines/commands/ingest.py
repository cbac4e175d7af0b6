"""shopml ingest: materialise the ingest assets for everything in the landing folder."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

from data_contracts.settings import Settings
from pipelines.ingest import transform

# Console logging of in-process runs: only what is worse than a failed step.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# Dagster's tags for a run over a range of partitions (a single-run backfill).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", action="append", help="only this landing day (YYYY-MM-DD); repeatable")


def dagster_instance(settings: Settings | None = None):
    """The Dagster instance runs are recorded in, so they show in the UI.

    DAGSTER_HOME when set; else the production profile's PostgreSQL-backed instance, or
    ./dagster_home (SQLite) on one machine; else an in-memory instance.
    """
    from dagster import DagsterInstance

    settings = settings or Settings.from_env()
    if "DAGSTER_HOME" not in os.environ:
        if settings.profile == "production":
            home = settings.data_dir / "dagster_home_production"
            home.mkdir(parents=True, exist_ok=True)
            template = Path(__file__).resolve().parents[1] / "instance" / "production.yaml"
            (home / "dagster.yaml").write_text(template.read_text())
            # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, whose server-side
            # parameters break dagster-postgres' NOTIFY; name the psycopg2 driver.
            url = settings.postgres_url.replace("postgresql://", "postgresql+psycopg2://", 1)
            os.environ["SHOPML_DAGSTER_POSTGRES_URL"] = url
            return DagsterInstance.from_config(str(home.resolve()))
        if Path("dagster_home/dagster.yaml").exists():
            os.environ["DAGSTER_HOME"] = str(Path("dagster_home").resolve())
    if "DAGSTER_HOME" in os.environ:
        return DagsterInstance.get()
    return DagsterInstance.ephemeral()


def ingest_landed(settings: Settings, batches: list[str] | None = None, instance=None) -> list[str]:
    """Make the landing days partitions and ingest them, one run per range; return the run ids.

    Every landing day with files, or only ``batches``, is ingested; the days in the order of
    the instance's partitions form ranges, each one single-run backfill (one run when the
    days were registered oldest first, as landing them in order does).

    A landed file that cannot be read is moved aside and the rest ingested (``rejected_files``
    lists it). A failed run (a broken source file, a red blocking check) raises a Dagster
    error naming the file and the problem; the warehouse then holds what it held before.
    """
    from pipelines.definitions import build_definitions
    from pipelines.ingest.partitions import landing_days, partition_ranges, register_landing_days

    defs = build_definitions(settings)
    instance = instance or dagster_instance(settings)
    # The run's step events, failures included, go to the Dagster UI; a failure reaches the
    # caller as the exception, which the CLI prints in one line (not as the log's tracebacks).
    quiet = QUIET
    batches = batches or transform.landed_batches(settings)
    runs = []
    if not batches:
        result = defs.resolve_job_def("catalog_job").execute_in_process(run_config=quiet, instance=instance)
        return [result.run_id]
    landed = transform.landed_batches(settings)
    missing = sorted(set(batches) - set(landed))
    if missing:
        raise ValueError(f"nothing landed for {', '.join(missing)} in {settings.events_landing}/")
    register_landing_days(instance, landed)
    job = defs.resolve_job_def("ingest_job")
    for first, last in partition_ranges(batches, instance.get_dynamic_partitions(landing_days.name)):
        result = job.execute_in_process(
            run_config=quiet, instance=instance, tags={RANGE_START_TAG: first, RANGE_END_TAG: last}
        )
        runs.append(result.run_id)
    return runs


def run_job(settings: Settings, name: str, instance=None) -> str:
    """Run one unpartitioned job of the code location in this process; return its run id."""
    from pipelines.definitions import build_definitions

    job = build_definitions(settings).resolve_job_def(name)
    quiet = QUIET
    return job.execute_in_process(run_config=quiet, instance=instance or dagster_instance(settings)).run_id


def rejected_files(settings: Settings, runs: list[str]) -> list[tuple[str, str]]:
    """(file, reason) of the landed files these runs could not read and moved aside."""
    from data_contracts import warehouse

    if not settings.warehouse_path.exists():
        return []
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    try:
        if not warehouse.table_exists(conn, "rejected_files"):
            return []
        return conn.execute(
            "SELECT file, reason FROM rejected_files WHERE run_id IN (SELECT unnest(?)) ORDER BY file", [runs]
        ).fetchall()
    finally:
        conn.close()


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.batch:
        for batch in args.batch:
            try:
                date.fromisoformat(batch)
            except ValueError:
                raise ValueError(f"--batch {batch!r}: not a day (YYYY-MM-DD)") from None
    runs = ingest_landed(settings, args.batch)
    print(f"ingest finished: {len(runs)} run(s) {', '.join(runs)}")
    rejected = rejected_files(settings, runs)
    if rejected:
        files = "; ".join(f"{reason}" for _, reason in rejected)
        print(
            f"shopml ingest: {len(rejected)} landed file(s) could not be read and were moved to"
            f" {settings.rejected_landing}/ (everything else was ingested): {files}",
            file=sys.stderr,
        )
        return 1
    return 0
