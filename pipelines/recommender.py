"""Recommender assets: dataset → model → evaluation (plot, baselines) → promotion."""

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
)
from dagster_duckdb import DuckDBResource

from data_contracts.settings import use_model_store
from pipelines.reports import plot_metadata, write_report
from pipelines.resources import ShopSettings
from pipelines.retraining import challenger_mode, start_challenger

# training.recommender is imported inside each asset: it imports torch (about 2 s), and every
# Dagster process loads these definitions, including an ingest run that needs none of it.

GROUP = "recommender"
HEADLINE = ("hr@10", "ndcg@10", "mrr", "coverage")


def _dataset(warehouse_db: DuckDBResource):
    from training.recommender.data import build_dataset

    with warehouse_db.get_connection() as conn:
        return build_dataset(conn)


@asset(group_name=GROUP, deps=[AssetKey("events"), AssetKey("catalog")])
def recommender_dataset(warehouse_db: DuckDBResource) -> MaterializeResult:
    """Each user's item sequence from the clean events, and the leave-one-out split's fingerprint."""
    from training.recommender.data import split_fingerprint

    data = _dataset(warehouse_db)
    return MaterializeResult(
        metadata={
            "users": len(data.users),
            "items": data.num_items,
            "interactions": int(sum(len(s) for s in data.sequences)),
            "split": split_fingerprint(data),
        }
    )


@asset(group_name=GROUP, deps=[recommender_dataset])
def recommender_model(warehouse_db: DuckDBResource, settings: ShopSettings) -> MaterializeResult:
    """A SASRec model trained with the configured profile, saved to the BentoML model store."""
    from training.recommender.artifact import save_to_store
    from training.recommender.training import train as train_recommender

    config = settings.get()
    use_model_store(config)
    data = _dataset(warehouse_db)
    result = train_recommender(data, config.training_profile)
    tag = save_to_store(result.artifact, labels={"profile": config.training_profile})
    metrics = result.artifact.metrics
    return MaterializeResult(
        metadata={
            "tag": tag,
            "profile": config.training_profile,
            "epochs": result.epochs,
            "stop_reason": result.stop_reason,
            "train_seconds": round(result.train_seconds, 1),
            **{k: float(metrics[k]) for k in HEADLINE if k in metrics},
            # The co-occurrence prior's weight chosen on validation (0: the model alone).
            "prior_weight": float(metrics["prior"]["weight"]) if "prior" in metrics else 0.0,
        }
    )


def latest_tag(context: AssetExecutionContext, asset_name: str) -> str:
    """The model tag recorded by the latest materialisation of ``asset_name``."""
    event = context.instance.get_latest_materialization_event(AssetKey(asset_name))
    if event is None or "tag" not in event.asset_materialization.metadata:
        raise ValueError(f"{asset_name} has not been materialised yet")
    return event.asset_materialization.metadata["tag"].value


@asset(group_name=GROUP, deps=[recommender_model])
def recommender_evaluation(
    context: AssetExecutionContext, warehouse_db: DuckDBResource, settings: ShopSettings
) -> MaterializeResult:
    """Leave-one-out, full ranking, seen items filtered: the model against most-popular,
    co-occurrence and EASE on the same split; then promotion if it beats the best of them and
    the promoted model on validation, or the best baseline served when no trained model does."""
    from training.recommender.artifact import load_from_store
    from training.recommender.evaluation import metrics_plot_png
    from training.recommender.promotion import promote_if_better

    config = settings.get()
    use_model_store(config)
    tag = latest_tag(context, "recommender_model")
    metrics = load_from_store(tag).metrics
    png = metrics_plot_png(metrics)
    decision = promote_if_better(tag, _dataset(warehouse_db), challenger=challenger_mode(context))
    experiment = None
    if decision["challenger"]:
        experiment = start_challenger("recommender", decision["previous"], tag, decision["reason"], config)[
            "name"
        ]
    paths = write_report(
        config.reports_dir, "recommender", {"tag": tag, **metrics, "promotion": decision}, png
    )
    table = (
        "| model | "
        + " | ".join(HEADLINE[:3])
        + " |\n|---|---|---|---|\n"
        + "\n".join(
            f"| {name} | " + " | ".join(f"{values.get(k, 0):.4f}" for k in HEADLINE[:3]) + " |"
            for name, values in {"sasrec": metrics, **metrics.get("baselines", {})}.items()
        )
    )
    return MaterializeResult(
        metadata={
            "tag": tag,
            "protocol": "leave-one-out, full ranking over all items, seen items filtered",
            "metrics": MetadataValue.md(table),
            "plot": plot_metadata(png),
            "promoted": decision["promoted"],
            "promotion": decision["reason"],
            "served": str(decision["served"]),
            "serves_baseline": str(decision["baseline"]),
            # The experiment the model is tried in first (retraining runs only).
            "challenger_experiment": str(experiment),
            "report": MetadataValue.path(str(paths["png"])),
        }
    )


recommender_job = define_asset_job(
    "recommender_job", selection=AssetSelection.groups(GROUP), description="Train, evaluate and maybe promote"
)
