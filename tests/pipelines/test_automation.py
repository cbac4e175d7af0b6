from __future__ import annotations

import json

from dagster import build_sensor_context
from testdata import SAMPLES

from pipelines.commands.ingest import contiguous_ranges
from pipelines.commands.land import land_file
from pipelines.definitions import build_definitions
from pipelines.ingest.automation import landing_sensor


def evaluate(cursor=None):
    context = build_sensor_context(cursor=cursor)
    requests = list(landing_sensor(context) or [])
    return requests, context.cursor


def test_sensor_requests_one_run_per_new_landing_day_and_nothing_twice(settings, tiny_shop):
    requests, cursor = evaluate()
    assert sorted(r.partition_key for r in requests) == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert json.loads(cursor)
    again, _ = evaluate(cursor)
    assert again == []
    land_file(settings, SAMPLES / "rees46_2019oct_sample.csv", "2026-01-06")
    changed, _ = evaluate(cursor)
    assert [r.partition_key for r in changed] == ["2026-01-06"]


def test_sensor_files_loose_files_under_today(settings):
    settings.events_landing.mkdir(parents=True)
    (settings.events_landing / "drop.csv").write_bytes((SAMPLES / "rees46_2019oct_sample.csv").read_bytes())
    requests, _ = evaluate()
    assert len(requests) == 1
    assert not (settings.events_landing / "drop.csv").exists()
    assert list(settings.events_landing.glob(f"{requests[0].partition_key}/drop.csv"))


def test_sensor_runs_the_catalog_job_when_only_the_catalog_changed(settings, tiny_shop):
    _, cursor = evaluate()
    (settings.catalog_landing / "extra.csv").write_text(
        "item_id,title,price,updated_at\ni9,Lamp,3.5,2026-01-08\n"
    )
    requests, _ = evaluate(cursor)
    assert [r.job_name for r in requests] == ["catalog_job"]


def test_definitions_hold_the_schedule_sensor_jobs_and_every_asset(settings):
    defs = build_definitions(settings)
    assert {s.name for s in defs.schedules} == {"ingest_job_schedule", "features_job_schedule"}
    assert {s.name for s in defs.sensors} == {"landing_sensor", "served_logs_sensor"}
    keys = {spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()}
    assert keys == {
        "raw_events",
        "raw_catalog",
        "events",
        "quarantine_events",
        "catalog",
        "catalog_history",
        "quarantine_catalog",
        "user_sequences",
        "item_stats",
        "feature_sources",
        "feature_registry",
        "online_features",
        "served_recommendations",
        "served_searches",
        "item_search_index",
        "support_replies",
        "feedback",
        "recommender_dataset",
        "recommender_model",
        "recommender_evaluation",
        "support_corpus",
        "support_model",
        "support_evaluation",
    }


def test_contiguous_ranges():
    days = ["2026-01-03", "2026-01-01", "2026-01-02", "2026-01-07", "2010-12-10"]
    assert contiguous_ranges(days) == [
        ("2010-12-10", "2010-12-10"),
        ("2026-01-01", "2026-01-03"),
        ("2026-01-07", "2026-01-07"),
    ]


def test_the_warehouse_resource_waits_for_another_process_lock(settings):
    import subprocess
    import sys
    import time

    from pipelines.resources import WarehouseResource

    settings.warehouse_path.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(settings.warehouse_path)!r});"
            " print('locked', flush=True); time.sleep(3)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    start = time.monotonic()
    with WarehouseResource(database=str(settings.warehouse_path), lock_timeout_s=30).get_connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert time.monotonic() - start > 0.5
    holder.wait()
