"""The loop that closes on its own: retraining on a schedule and on new served data, a model
that passes the offline gate tried on shoppers as a challenger, and the experiment's guard
deciding its promotion.

1. ``retraining_job`` trains, evaluates and gates both models (the ``recommender`` and
   ``support`` groups). It runs weekly (``retraining_schedule``, ``SHOPML_RETRAIN_CRON``) and
   sooner when ``SHOPML_RETRAIN_MIN_NEW_ROWS`` served rows (recommendation lists and support
   replies) have landed since its last request (``new_served_data_sensor``).
2. Its runs carry the tag ``shopml/promotion=challenger``: there the gate does not replace a
   promoted trained model at once. A model that passes becomes the challenger of a planned
   experiment (``ExperimentRegistry.plan``): ``SHOPML_CHALLENGER_WEIGHT`` percent of the
   shoppers for at most ``SHOPML_CHALLENGER_DAYS`` days, served from the next start of the
   service (``serving.experiments.configured_experiment``). A run launched by hand (``shopml
   run``, a job started in the UI) promotes as before.
3. ``experiment_decisions`` (group ``experiments``, after ``experiment_results``) decides each
   planned experiment still running (``decide``): the guard fails (the challenger significantly
   worse on a guarded metric, or a sample-ratio mismatch) → stopped, the champion kept; the
   challenger significantly better on the primary metric, or the experiment over with the
   guard passing and at least ``SHOPML_CHALLENGER_MIN_USERS`` shoppers in each variant →
   promoted, the experiment stopped; over with fewer shoppers → stopped, the champion kept;
   otherwise it runs on. A promotion, like the experiment itself, reaches a service when it
   next starts; a stop reaches every worker within seconds.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    asset,
    define_asset_job,
    sensor,
)
from dagster_duckdb import DuckDBResource

from data_contracts import warehouse
from data_contracts.landing_log import KINDS
from data_contracts.settings import Settings, use_model_store
from pipelines.experiments import verdicts
from pipelines.resources import ShopSettings
from serving.experiments import ExperimentRegistry

PROMOTION_TAG = "shopml/promotion"
# What a challenger must beat the champion on to be promoted before the experiment is over.
PRIMARY_METRIC = {"recommender": "ctr", "support": "thumbs_up"}
SERVED_KINDS = ("served", "replies")  # the rows that count as new served data

retraining_job = define_asset_job(
    "retraining_job",
    selection=AssetSelection.groups("recommender", "support"),
    description="Retrain and gate both models; a model that passes becomes a challenger on shoppers",
    tags={PROMOTION_TAG: "challenger"},
)

retraining_schedule = ScheduleDefinition(
    name="retraining_schedule",
    job=retraining_job,
    cron_schedule=Settings.from_env().retrain_cron,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Retrain both models on the warehouse as it is (SHOPML_RETRAIN_CRON, weekly by default)",
)


def challenger_mode(context: AssetExecutionContext) -> bool:
    """Whether this run gates in challenger mode (a run of ``retraining_job``)."""
    return context.run.tags.get(PROMOTION_TAG) == "challenger"


def start_challenger(
    service: str, champion: str, challenger: str, reason: str, settings: Settings, metrics: dict | None = None
) -> dict:
    """Plan the experiment of ``challenger`` against ``champion`` (model tags); its record."""
    numbers = {k: v for k, v in (metrics or {}).items() if isinstance(v, int | float)}
    return ExperimentRegistry(settings.experiments_dir).plan(
        service, champion, challenger, settings.challenger_weight, settings.challenger_days, reason, numbers
    )


def count_new_rows(root: Path, files: dict[str, list[int]]) -> tuple[int, dict[str, list[int]]]:
    """Rows (lines) added to the served logs under ``root`` since ``files`` (path -> [bytes,
    lines] when last counted), and the new ``files``. Only the new bytes of a file are read;
    a file that shrank was replaced and is counted whole."""
    new_rows, now = 0, {}
    for kind in SERVED_KINDS:
        for path in sorted((root / KINDS[kind]).glob("*/*.jsonl")):
            size = path.stat().st_size
            known_size, known_lines = files.get(str(path), [0, 0])
            if size < known_size:
                known_size, known_lines = 0, 0
            added = 0
            if size > known_size:
                with path.open("rb") as handle:
                    handle.seek(known_size)
                    while chunk := handle.read(1 << 20):
                        added += chunk.count(b"\n")
            new_rows += added
            now[str(path)] = [size, known_lines + added]
    return new_rows, now


@sensor(
    job=retraining_job,
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.RUNNING,
)
def new_served_data_sensor(context: SensorEvaluationContext):
    """Retrain when ``SHOPML_RETRAIN_MIN_NEW_ROWS`` served rows landed since the last request."""
    settings = Settings.from_env()
    cursor = json.loads(context.cursor or '{"files": {}, "pending": 0}')
    added, files = count_new_rows(settings.landing_dir, cursor["files"])
    pending = cursor["pending"] + added
    if pending < settings.retrain_min_new_rows:
        context.update_cursor(json.dumps({"files": files, "pending": pending}))
        return SkipReason(f"{pending} new served rows of {settings.retrain_min_new_rows}")
    context.update_cursor(json.dumps({"files": files, "pending": 0}))
    total = sum(lines for _, lines in files.values())
    key = hashlib.sha1(f"{total}".encode()).hexdigest()[:12]
    return RunRequest(run_key=f"served-{key}", tags={"shopml/new_served_rows": str(pending)})


def decide(rows: pl.DataFrame, record: dict, min_users: int, now: datetime | None = None) -> tuple[str, str]:
    """What to do with a planned experiment from its rows of ``experiment_results``:
    ("promote" | "reject" | "keep" | "continue", why); see the module's docstring."""
    now = now or datetime.now(UTC)
    over = record.get("end") is not None and datetime.fromisoformat(record["end"]) <= now
    if rows.is_empty():
        return (
            ("keep", "the experiment ended without served traffic")
            if over
            else ("continue", "no traffic yet")
        )
    problems = verdicts(rows).get(record["name"], [])
    if problems:
        return "reject", "; ".join(problems)
    primary = PRIMARY_METRIC[record["service"]]
    challenger = rows.filter((pl.col("variant") == "challenger") & (pl.col("metric") == primary))
    if not challenger.is_empty() and challenger["significant"][0] and not challenger["worse"][0]:
        row = challenger.row(0, named=True)
        return "promote", (
            f"the challenger is better on {primary}: lift {row['lift']:+.1%} "
            f"[{row['lift_low']:+.1%}, {row['lift_high']:+.1%}], p = {row['p_value']:.2g}"
        )
    users = dict(rows.filter(pl.col("metric") == rows["metric"][0]).select("variant", "users").iter_rows())
    enough = all(users.get(v, 0) >= min_users for v in ("champion", "challenger"))
    if over and enough:
        return "promote", f"the guard passed to the end with {users} shoppers per variant"
    if over:
        return "keep", f"too few shoppers ({users}; {min_users} per variant needed): the champion stays"
    return "continue", f"running; {users} shoppers per variant, nothing significant yet"


def promote_challenger(record: dict, reason: str, settings: Settings) -> None:
    """Serve the experiment's challenger from the next start of its service."""
    tag = next(v["model"] for v in record["variants"] if v["name"] == "challenger")
    use_model_store(settings)
    if record["service"] == "recommender":
        from training.recommender.promotion import promote_tag

        promote_tag(tag, f"experiment {record['name']}: {reason}")
    else:
        from training.support.artifact import promote

        promote(tag, {**record.get("offline_metrics", {}), "experiment": record["name"]}, settings)


@asset(
    name="experiment_decisions",
    group_name="experiments",
    deps=[AssetKey("experiment_results")],
    description="Each experiment the retraining loop planned: its challenger promoted, rejected, "
    "or left running, from the guard and the primary metric",
)
def experiment_decisions(warehouse_db: DuckDBResource, settings: ShopSettings) -> MaterializeResult:
    config = settings.get()
    registry = ExperimentRegistry(config.experiments_dir)
    with warehouse_db.get_connection() as conn:
        results = (
            warehouse.read(conn, "SELECT * FROM experiment_results")
            if warehouse.table_exists(conn, "experiment_results")
            else pl.DataFrame(schema={"experiment": pl.String()})
        )
    decisions = []
    planned, damaged = registry.planned()
    for record in planned:
        rows = results.filter(pl.col("experiment") == record["name"])
        action, why = decide(rows, record, config.challenger_min_users)
        if action == "promote":
            promote_challenger(record, why, config)
        if action != "continue":
            registry.stop(
                record["name"],
                why,
                decision={"promote": "promoted", "reject": "rejected"}.get(action, "kept"),
            )
        decisions.append(
            {"experiment": record["name"], "service": record["service"], "action": action, "why": why}
        )
    table = "\n".join(
        f"| {d['experiment']} | {d['service']} | {d['action']} | {d['why']} |" for d in decisions
    )
    return MaterializeResult(
        metadata={
            "decided": sum(d["action"] != "continue" for d in decisions),
            "running": sum(d["action"] == "continue" for d in decisions),
            "damaged_records": MetadataValue.json(damaged),
            "decisions": MetadataValue.md(
                "| experiment | service | action | why |\n|---|---|---|---|\n" + table
                if decisions
                else "none planned"
            ),
        }
    )
