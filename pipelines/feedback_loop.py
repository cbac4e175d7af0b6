"""The loop back: what the services served and heard (landing/served, replies, feedback) into
warehouse tables a data scientist joins to events, and that the next training run reads."""

import hashlib
import json

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetSelection,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    asset,
    define_asset_job,
    sensor,
)
from dagster_duckdb import DuckDBResource

from data_contracts import warehouse
from data_contracts.landing_log import KINDS
from pipelines.ingest import logs
from pipelines.resources import ShopSettings

GROUP = "feedback_loop"


def _log_asset(kind: str):
    spec = logs.LOG_TABLES[kind]

    @asset(
        name=spec.table,
        group_name=GROUP,
        description=spec.description,
        check_specs=[
            AssetCheckSpec(
                "rows_balance",
                asset=spec.table,
                blocking=True,
                description="rows_in = rows_clean + rows_quarantined + rows_duplicate",
            )
        ],
    )
    def _asset(warehouse_db: DuckDBResource, settings: ShopSettings):
        result = logs.read_log(settings.get().landing_dir, kind)
        with warehouse_db.get_connection() as conn, warehouse.transaction(conn):
            warehouse.replace_table(conn, spec.table, result.clean)
            warehouse.replace_table(conn, f"quarantine_{spec.table}", result.quarantined)
            if kind == "served":
                logs.create_ctr_view(conn)
            if kind == "searches":
                logs.create_search_ctr_view(conn)
        counts = {
            "rows_in": result.rows_in,
            "rows_clean": result.clean.height,
            "rows_quarantined": result.quarantined.height,
            "rows_duplicate": result.duplicates,
            "files": result.files,
        }
        yield MaterializeResult(metadata={**counts, "preview": MetadataValue.md(_preview(result.clean))})
        yield AssetCheckResult(
            check_name="rows_balance",
            passed=result.rows_in == result.clean.height + result.quarantined.height + result.duplicates,
            metadata=counts,
        )

    return _asset


def _preview(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "no rows yet"
    lists = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.List)]
    head = frame.head(5).with_columns(pl.col(lists).cast(pl.List(pl.String)).list.join(", "))
    return head.with_columns(pl.all().cast(pl.String)).to_pandas().to_markdown(index=False)


served_recommendations = _log_asset("served")
served_searches = _log_asset("searches")
support_replies = _log_asset("replies")
feedback = _log_asset("feedback")

feedback_loop_job = define_asset_job(
    "feedback_loop_job",
    # The experiments' results (and their guard) are computed again from every new log.
    selection=AssetSelection.groups(GROUP, "experiments"),
    description="Ingest what the services logged, then the experiments' results",
)


@sensor(job=feedback_loop_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING)
def served_logs_sensor(context: SensorEvaluationContext):
    """Start an ingest of the service logs when new lines have landed."""
    root = ShopSettings().get().landing_dir
    stamps = {
        str(p): f"{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for kind in ("served", "searches", "replies", "feedback")
        for p in sorted((root / KINDS[kind]).glob("*/*.jsonl"))
    }
    seen = json.loads(context.cursor or "{}")
    if stamps == seen:
        return SkipReason("no new service logs")
    context.update_cursor(json.dumps(stamps))
    digest = hashlib.sha1(json.dumps(stamps, sort_keys=True).encode()).hexdigest()[:12]
    return RunRequest(run_key=f"logs-{digest}")
