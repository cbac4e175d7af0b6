"""The search asset on the tiny shop: built from the catalog with MiniLM, then rebuilt incrementally."""

from __future__ import annotations

from dagster import AssetKey, DagsterInstance

from pipelines.commands.ingest import ingest_landed, run_job
from search.index import load_index


def test_the_index_is_built_from_the_catalog_and_rebuilt_incrementally(settings, tiny_shop):
    instance = DagsterInstance.ephemeral()
    ingest_landed(settings, instance=instance)
    assert instance.get_run_by_id(run_job(settings, "search_job", instance=instance)).is_success

    def metadata():
        event = instance.get_latest_materialization_event(AssetKey("item_search_index"))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}

    first = metadata()
    index = load_index(settings.search_index_dir)
    assert first["items"] == len(index) == first["embedded"] > 0 and first["version"] == 1
    assert first["out_of_stock"] == int((~index.in_stock).sum())
    # Nothing changed in the catalog: the next build embeds nothing.
    run_job(settings, "search_job", instance=instance)
    second = metadata()
    assert (second["version"], second["embedded"], second["reused"]) == (2, 0, first["items"])


def test_a_landed_catalog_file_rebuilds_the_search_index():
    from pipelines.definitions import defs

    job = defs.resolve_job_def("catalog_job")
    assert AssetKey("item_search_index") in job.asset_layer.selected_asset_keys
