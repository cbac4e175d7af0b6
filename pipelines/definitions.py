"""The Dagster code location: assembles assets, checks, jobs, schedules, sensors and resources."""

from dagster import Definitions, in_process_executor, load_assets_from_modules

from data_contracts.settings import Settings
from pipelines import experiments, features, feedback_loop, recommender, retraining, search, support
from pipelines.ingest import assets as ingest
from pipelines.ingest import automation
from pipelines.resources import build_resources


def build_definitions(settings: Settings | None = None) -> Definitions:
    return Definitions(
        assets=load_assets_from_modules(
            [ingest, features, feedback_loop, recommender, search, support, experiments, retraining]
        ),
        jobs=[
            automation.ingest_job,
            automation.catalog_job,
            features.features_job,
            feedback_loop.feedback_loop_job,
            recommender.recommender_job,
            search.search_job,
            support.support_job,
            retraining.retraining_job,
        ],
        schedules=[
            automation.daily_ingest_schedule,
            features.features_schedule,
            retraining.retraining_schedule,
        ],
        sensors=[
            automation.landing_sensor,
            feedback_loop.served_logs_sensor,
            retraining.new_served_data_sensor,
        ],
        resources=build_resources(settings),
        # DuckDB has one writer at a time: steps run one after another in the run's process.
        executor=in_process_executor,
    )


defs = build_definitions()
