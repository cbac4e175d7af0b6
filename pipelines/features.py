"""Feature store assets: offline sources from the warehouse → feast apply → online store."""

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
    define_asset_job,
)
from dagster_duckdb import DuckDBResource

from pipelines.resources import FeatureStoreResource

# The features package is imported inside each asset: it imports Feast (about 5 s), and
# every Dagster process loads these definitions, including an ingest run that needs none of it.

GROUP = "features"


@asset(group_name=GROUP, deps=[AssetKey("events"), AssetKey("catalog"), AssetKey("item_stats")])
def feature_sources(warehouse_db: DuckDBResource, feature_store: FeatureStoreResource) -> MaterializeResult:
    """The Parquet files Feast reads offline: per-event user history, item features, user stats."""
    from features import offline

    config = feature_store.config()
    with warehouse_db.get_connection() as conn:
        writes = offline.write_offline_sources(conn, config.offline_dir, config.sequence_length)
    return MaterializeResult(
        metadata={
            "rows": sum(w.rows for w in writes),
            "changed_rows": sum(w.changed_rows for w in writes),
            "sources": MetadataValue.json(
                {w.name: {"rows": w.rows, "changed": w.changed_rows} for w in writes}
            ),
        }
    )


@asset(group_name=GROUP, deps=[feature_sources])
def feature_registry(feature_store: FeatureStoreResource) -> MaterializeResult:
    """`feast apply`: entities, feature views and the versioned feature services."""
    from features import store

    applied = store.apply(feature_store.open(), feature_store.config())
    return MaterializeResult(metadata={"objects": MetadataValue.json(applied)})


@asset(
    group_name=GROUP,
    deps=[feature_registry],
    check_specs=[
        AssetCheckSpec(
            "every_user_online",
            asset="online_features",
            blocking=True,
            description="Every user with a sequence in the warehouse is readable online",
        ),
        AssetCheckSpec(
            "sample_matches_warehouse",
            asset="online_features",
            blocking=True,
            description="A sample of users' online sequences equals the warehouse's",
        ),
    ],
)
def online_features(
    context: AssetExecutionContext, warehouse_db: DuckDBResource, feature_store: FeatureStoreResource
):
    """Incremental materialisation of what changed offline into the online store."""
    from features import checks, online, store

    config = feature_store.config()
    feast_store = feature_store.open()
    loaded = store.materialize(feast_store, config)
    yield MaterializeResult(
        metadata={
            "entities_written": sum(m.entities for m in loaded),
            "windows": MetadataValue.json(
                [
                    {"source": m.source, "start": str(m.start), "end": str(m.end), "entities": m.entities}
                    for m in loaded
                ]
            ),
            "profile": config.profile,
        }
    )
    sequences = online.open_sequences(feast_store, config)
    with warehouse_db.get_connection() as conn:
        for name, result in (
            ("every_user_online", checks.check_all_users_online(sequences, conn)),
            ("sample_matches_warehouse", checks.check_sample_matches_warehouse(sequences, conn)),
        ):
            yield AssetCheckResult(
                check_name=name,
                passed=result.passed,
                description=result.description,
                metadata=result.metadata,
            )


features_job = define_asset_job(
    "features_job",
    selection=AssetSelection.groups(GROUP),
    description="Refresh the offline sources, apply the Feast repo and materialise the online store",
)
# After the 01:00 ingest of yesterday's files.
features_schedule = ScheduleDefinition(
    job=features_job, cron_schedule="0 2 * * *", default_status=DefaultScheduleStatus.RUNNING
)
