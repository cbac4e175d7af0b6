from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from dagster import DagsterInstance, build_schedule_context, build_sensor_context
from testdata import SAMPLES

from pipelines.commands.land import land_file
from pipelines.definitions import build_definitions
from pipelines.ingest.automation import daily_ingest_schedule, landing_sensor
from pipelines.ingest.partitions import partition_ranges, register_landing_days


def evaluate(cursor=None, instance=None):
    """One sensor tick; the partitions it asks for are added, as the daemon adds them."""
    instance = instance or DagsterInstance.ephemeral()
    context = build_sensor_context(cursor=cursor, instance=instance)
    result = landing_sensor(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
    return list(result.run_requests or []), result.cursor


def test_sensor_requests_one_run_per_new_landing_day_and_nothing_twice(settings, tiny_shop):
    instance = DagsterInstance.ephemeral()
    requests, cursor = evaluate(instance=instance)
    assert sorted(r.partition_key for r in requests) == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert instance.get_dynamic_partitions("landing_days") == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert json.loads(cursor)
    again, _ = evaluate(cursor, instance)
    assert again == []
    land_file(settings, SAMPLES / "rees46_2019oct_sample.csv", "2026-01-06")
    land_file(settings, SAMPLES / "rees46_2019oct_sample.csv", "2026-01-09")
    changed, _ = evaluate(cursor, instance)
    assert [r.partition_key for r in changed] == ["2026-01-06", "2026-01-09"]
    # Only days with files are partitions: 2026-01-08 had none.
    assert instance.get_dynamic_partitions("landing_days") == [
        "2026-01-05",
        "2026-01-06",
        "2026-01-07",
        "2026-01-09",
    ]


def test_sensor_makes_landed_days_partitions_even_when_their_files_were_seen(settings, tiny_shop):
    """An instance without the partitions (a new DAGSTER_HOME) gets them from the landing folder."""
    _, cursor = evaluate()
    fresh = DagsterInstance.ephemeral()
    requests, _ = evaluate(cursor, fresh)
    assert requests == []
    assert fresh.get_dynamic_partitions("landing_days") == ["2026-01-05", "2026-01-06", "2026-01-07"]


def test_land_makes_the_day_a_partition_and_a_catalog_file_none(settings, tmp_path):
    instance = DagsterInstance.ephemeral()
    land_file(settings, SAMPLES / "rees46_2019oct_sample.csv", "2026-02-03", instance=instance)
    catalog = tmp_path / "items.csv"
    catalog.write_text("item_id,title,price,updated_at\ni9,Lamp,3.5,2026-01-08\n")
    land_file(settings, catalog, "2026-02-04", instance=instance)
    assert instance.get_dynamic_partitions("landing_days") == ["2026-02-03"]


def test_the_daily_schedule_ingests_yesterday_only_when_it_has_data(settings):
    instance = DagsterInstance.get()  # a schedule needs a persistent one: the fixture's DAGSTER_HOME
    register_landing_days(instance, ["2026-01-06"])
    repository = build_definitions(settings).get_repository_def()

    def tick(when: datetime):
        context = build_schedule_context(
            instance=instance, scheduled_execution_time=when, repository_def=repository
        )
        return daily_ingest_schedule.evaluate_tick(context)

    ran = tick(datetime(2026, 1, 7, 1, tzinfo=timezone.utc))
    assert [r.partition_key for r in ran.run_requests] == ["2026-01-06"]
    skipped = tick(datetime(2026, 1, 8, 1, tzinfo=timezone.utc))
    assert skipped.run_requests == [] and "nothing landed for 2026-01-07" in skipped.skip_message


def test_sensor_files_loose_files_under_today(settings):
    settings.events_landing.mkdir(parents=True)
    (settings.events_landing / "drop.csv").write_bytes((SAMPLES / "rees46_2019oct_sample.csv").read_bytes())
    instance = DagsterInstance.ephemeral()
    requests, _ = evaluate(instance=instance)
    assert len(requests) == 1
    assert instance.get_dynamic_partitions("landing_days") == [requests[0].partition_key]
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
    assert {s.name for s in defs.schedules} == {
        "ingest_job_schedule",
        "features_job_schedule",
        "retraining_schedule",
    }
    assert {s.name for s in defs.sensors} == {
        "landing_sensor",
        "served_logs_sensor",
        "new_served_data_sensor",
    }
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
        "experiment_results",
        "experiment_decisions",
    }


def test_partition_ranges_follow_the_order_of_the_partitions():
    ordered = ["2010-12-10", "2026-01-01", "2026-01-02", "2026-01-03", "2026-01-07", "2025-12-31"]
    # Days apart in the calendar are neighbours when no landed day lies between them.
    assert partition_ranges(
        ["2026-01-03", "2026-01-01", "2026-01-02", "2026-01-07", "2010-12-10"], ordered
    ) == [("2010-12-10", "2026-01-07")]
    # A day registered late (2025-12-31) is a range of its own; a day left out splits one.
    assert partition_ranges(["2025-12-31", "2026-01-01", "2026-01-03"], ordered) == [
        ("2026-01-01", "2026-01-01"),
        ("2026-01-03", "2026-01-03"),
        ("2025-12-31", "2025-12-31"),
    ]
    with pytest.raises(ValueError, match="not partitions of landing_days: 2026-01-04"):
        partition_ranges(["2026-01-04"], ordered)


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
