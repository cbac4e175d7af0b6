"""Support-model assets: corpus → model (retriever, ranker, generator) → evaluation → promotion."""

import json
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    define_asset_job,
    multi_asset,
)
from dagster_duckdb import DuckDBResource

from data_contracts import warehouse
from data_contracts.settings import use_model_store
from pipelines.reports import plot_metadata, write_report
from pipelines.resources import ShopSettings
from pipelines.retraining import challenger_mode, start_challenger

GROUP = "support"
HEADLINE = ("retrieval_recall@1", "retrieval_recall@5", "ranker_r@1", "rouge_l", "handover_rate")


@multi_asset(
    specs=[
        AssetSpec(
            "support_corpus",
            group_name=GROUP,
            deps=[AssetKey("feedback"), AssetKey("support_replies")],
            description="Q&A pairs and KB articles, cleaned, deduplicated, leak-free split, with past feedback",
        ),
        AssetSpec(
            "support_model",
            group_name=GROUP,
            deps=["support_corpus"],
            description="Retriever index, cross-encoder ranker and generator, saved to the model store",
        ),
        AssetSpec(
            "support_evaluation",
            group_name=GROUP,
            deps=["support_model"],
            description="Held-out split: retrieval recall by intent, ranker R@1, ROUGE-L, handover, latency",
        ),
    ]
)
def support_model(context: AssetExecutionContext, settings: ShopSettings, warehouse_db: DuckDBResource):
    """The support model's training run, one step: the corpus's embeddings feed the model."""
    import torch

    from training.support import training_steps
    from training.support.artifact import promoted_tag, save_support_model
    from training.support.config import SupportConfig

    config = settings.get()
    use_model_store(config)
    support = SupportConfig.for_profile(config.training_profile)
    torch.set_num_threads(support.num_threads)
    served_feedback = feedback_from_warehouse(
        warehouse_db, config.data_dir / "support" / "warehouse_feedback.jsonl"
    )
    corpus = training_steps.support_corpus(config, support, extra_feedback=[served_feedback])
    yield MaterializeResult(
        asset_key="support_corpus",
        metadata={
            "rows": corpus.qa.height,
            "articles": corpus.articles.height,
            "feedback_rows": corpus.feedback.height,
            "stats": MetadataValue.json(corpus.stats),
        },
    )
    model, corpus = training_steps.train_support_model(config, support, corpus)
    report = training_steps.support_evaluation(model, corpus)
    model.metrics = report.metrics
    incumbent = training_steps.incumbent_report(config, corpus, support)
    tag = save_support_model(model, config)
    yield MaterializeResult(
        asset_key="support_model", metadata={"tag": tag, "profile": config.training_profile}
    )
    champion = promoted_tag(config)
    decision = training_steps.promote_support_model(
        tag, report, incumbent, config, challenger=challenger_mode(context)
    )
    experiment = None
    if decision["challenger"]:
        experiment = start_challenger("support", champion, tag, decision["reason"], config, report.metrics)[
            "name"
        ]
    paths = write_report(
        config.reports_dir, "support", {"tag": tag, **report.metrics, "promotion": decision}, report.plot_png
    )
    yield MaterializeResult(
        asset_key="support_evaluation",
        metadata={
            "tag": tag,
            **{
                k: float(report.metrics[k])
                for k in HEADLINE
                if isinstance(report.metrics.get(k), int | float)
            },
            "by_intent": MetadataValue.md(report.table),
            "plot": plot_metadata(report.plot_png),
            "promoted": decision["promoted"],
            "promotion": decision["reason"],
            # The experiment the model is tried in first (retraining runs only).
            "challenger_experiment": str(experiment),
            "report": MetadataValue.path(str(paths["png"])),
        },
    )


def feedback_from_warehouse(warehouse_db: DuckDBResource, path: Path) -> Path:
    """Thumbs on served replies, with the message and reply they rate: the ranker's new pairs."""
    rows = []
    with warehouse_db.get_connection() as conn:
        if warehouse.table_exists(conn, "feedback") and warehouse.table_exists(conn, "support_replies"):
            rows = warehouse.read(
                conn,
                """
                SELECT f.target_id AS reply_id, f.rating, f.reason, r.message AS context, r.reply
                FROM feedback f JOIN support_replies r ON r.reply_id = f.target_id
                WHERE f.target_kind = 'reply' ORDER BY f.ts
                """,
            ).to_dicts()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


support_job = define_asset_job(
    "support_job", selection=AssetSelection.groups(GROUP), description="Train, evaluate and maybe promote"
)
