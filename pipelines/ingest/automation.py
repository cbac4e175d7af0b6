"""Jobs, the daily schedule and the landing-folder sensor of the ingest."""

import hashlib
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    schedule,
    sensor,
)

from data_contracts import adapters
from data_contracts.settings import Settings
from pipelines.ingest import transform
from pipelines.ingest.assets import GROUP
from pipelines.ingest.partitions import landing_days

ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.groups(GROUP),
    description="Ingest the events landed on a day, refresh the catalog, sequences and item stats",
)
catalog_job = define_asset_job(
    "catalog_job",
    selection=AssetSelection.assets(
        "raw_catalog", "catalog", "catalog_history", "quarantine_catalog", "item_stats", "item_search_index"
    ),
    description="Refresh the catalog, item stats and the search index after a catalog file landed",
)


@schedule(
    job=ingest_job,
    name="ingest_job_schedule",
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
def daily_ingest_schedule(context: ScheduleEvaluationContext):
    """At 01:00 UTC, ingest yesterday's landing day once more, now that it is complete."""
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    if not context.instance.has_dynamic_partition(landing_days.name, day):
        return SkipReason(f"nothing landed for {day}")
    return RunRequest(partition_key=day, run_key=f"daily-{day}")


def file_loose_events(settings: Settings, today: str) -> list[Path]:
    """Move event files dropped straight into landing/events/ into today's folder."""
    root = settings.events_landing
    if not root.is_dir():
        return []
    moved = []
    for path in sorted(root.iterdir()):
        if path.is_file() and path.suffix.lower() in adapters.EVENT_SUFFIXES:
            target = root / today / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
            moved.append(target)
    return moved


def _fingerprint(paths: list[Path]) -> dict[str, str]:
    return {str(p): f"{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths}


def landing_changes(
    settings: Settings, seen: dict[str, str]
) -> tuple[dict[str, list[str]], bool, dict[str, str]]:
    """(new or changed event files per batch, whether the catalog changed, new cursor)."""
    current: dict[str, str] = {}
    changed: dict[str, list[str]] = {}
    for batch in transform.landed_batches(settings):
        for path, stamp in _fingerprint(transform.landed_event_files(settings, batch)).items():
            current[path] = stamp
            if seen.get(path) != stamp:
                changed.setdefault(batch, []).append(path)
    catalog_files = _fingerprint(
        [p for p in sorted(settings.catalog_landing.glob("*")) if p.is_file()]
        if settings.catalog_landing.is_dir()
        else []
    )
    catalog_changed = any(seen.get(p) != s for p, s in catalog_files.items())
    current.update(catalog_files)
    return changed, catalog_changed, current


@sensor(job=ingest_job, minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING)
def landing_sensor(context: SensorEvaluationContext):
    """Make every landing day with files a partition; start an ingest run for each one with
    new or changed files."""
    settings = Settings.from_env()
    file_loose_events(settings, datetime.now(timezone.utc).date().isoformat())
    changed, catalog_changed, cursor = landing_changes(settings, json.loads(context.cursor or "{}"))
    registered = set(context.instance.get_dynamic_partitions(landing_days.name))
    new_days = sorted(set(transform.landed_batches(settings)) - registered)
    runs = []
    for batch, paths in sorted(changed.items()):
        digest = hashlib.sha1("".join(f"{p}{cursor[p]}" for p in sorted(paths)).encode()).hexdigest()[:12]
        runs.append(
            RunRequest(
                partition_key=batch, run_key=f"{batch}-{digest}", tags={"shopml/files": str(len(paths))}
            )
        )
    if catalog_changed and not changed:
        digest = hashlib.sha1(json.dumps(cursor, sort_keys=True).encode()).hexdigest()[:12]
        runs.append(RunRequest(job_name=catalog_job.name, run_key=f"catalog-{digest}"))
    return SensorResult(
        run_requests=runs,
        skip_reason=None if runs else SkipReason("no new files in the landing folder"),
        dynamic_partitions_requests=[landing_days.build_add_request(new_days)] if new_days else None,
        cursor=json.dumps(cursor),
    )
