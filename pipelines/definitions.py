"""The Dagster code location: assembles assets, checks, jobs, schedules, sensors and resources."""

from dagster import Definitions, in_process_executor, load_assets_from_modules

from data_contracts.settings import Settings
from pipelines import features as feature_assets
from pipelines import feedback_loop
from pipelines.features import features_job, features_schedule
from pipelines.ingest import assets as ingest_assets
from pipelines.ingest.automation import catalog_job, daily_ingest_schedule, ingest_job, landing_sensor
from pipelines.resources import build_resources


def build_definitions(settings: Settings | None = None) -> Definitions:
    return Definitions(
        assets=load_assets_from_modules([ingest_assets, feature_assets, feedback_loop]),
        jobs=[ingest_job, catalog_job, features_job, feedback_loop.feedback_loop_job],
        schedules=[daily_ingest_schedule, features_schedule],
        sensors=[landing_sensor, feedback_loop.served_logs_sensor],
        resources=build_resources(settings),
        # DuckDB has one writer at a time: steps run one after another in the run's process.
        executor=in_process_executor,
    )


defs = build_definitions()
