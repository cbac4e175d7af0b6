"""Product search assets: the catalog's search index (BM25 and MiniLM vectors), rebuilt
incrementally when catalog rows change."""

from dagster import AssetKey, AssetSelection, MaterializeResult, MetadataValue, asset, define_asset_job
from dagster_duckdb import DuckDBResource

from pipelines.resources import ShopSettings

# search and training are imported inside the asset: they import torch and transformers, and
# every Dagster process loads these definitions.

GROUP = "search"


@asset(group_name=GROUP, deps=[AssetKey("catalog")])
def item_search_index(warehouse_db: DuckDBResource, settings: ShopSettings) -> MaterializeResult:
    """BM25 and dense (MiniLM, HNSW) indexes over every catalog item; out-of-stock items flagged."""
    import os

    import torch

    from search.encoder import Encoder
    from search.index import build_index

    # Embedding is the build's cost: every core this process may use (explicit, see README).
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    with warehouse_db.get_connection() as conn:
        catalog = conn.execute("SELECT * FROM catalog").pl()
    config = settings.get()
    auto = config.search_encoder == "auto"
    report = build_index(
        catalog,
        config.search_index_dir,
        Encoder(backend="onnx" if auto else config.search_encoder),
        embed_budget_seconds=config.search_embed_budget_seconds if auto else None,
    )
    return MaterializeResult(
        metadata={
            **{k: v for k, v in report.as_metadata().items() if k != "path"},
            "path": MetadataValue.path(str(report.path)),
            "lexical": "BM25 (bm25s, English stop words and Snowball stems)",
            "dense": f"all-MiniLM-L6-v2 ({report.encoder_backend}) over title, brand, category path; HNSW (usearch)",
        }
    )


search_job = define_asset_job(
    "search_job", selection=AssetSelection.groups(GROUP), description="Build the product search index"
)
