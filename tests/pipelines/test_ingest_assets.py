"""The ingest assets run through Dagster on a tiny shop and on real samples."""

from __future__ import annotations

import re
import shutil

import pytest
from dagster import AssetKey, DagsterInstance
from testdata import SAMPLES

from data_contracts import warehouse
from pipelines.cli import main
from pipelines.commands.ingest import RANGE_END_TAG, RANGE_START_TAG, ingest_landed
from pipelines.commands.land import land_file
from pipelines.definitions import build_definitions
from pipelines.ingest import transform


def tables(settings) -> dict[str, int]:
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    try:
        return {name: rows for name, rows, _ in warehouse.summary(conn)}
    finally:
        conn.close()


def check_results(instance, run_id) -> dict[str, bool]:
    records = instance.all_logs(run_id)
    return {
        r.dagster_event.event_specific_data.check_name: r.dagster_event.event_specific_data.passed
        for r in records
        if r.dagster_event and r.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_tiny_shop_end_to_end_checks_pass_and_a_rerun_doubles_nothing(settings, tiny_shop):
    instance = DagsterInstance.ephemeral()
    [run_id] = ingest_landed(settings, instance=instance)
    checks = check_results(instance, run_id)
    assert checks == {
        "readable_catalog_files": True,
        "readable_event_files": True,
        "catalog_contract": True,
        "events_contract": True,
        "rows_balance": True,
        "user_sequences_contract": True,
        "item_stats_contract": True,
    }
    first = tables(settings)
    assert first["raw_events"] == tiny_shop.events + tiny_shop.feed_rows
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    balance = conn.execute(
        "SELECT sum(rows_in), sum(rows_clean), sum(rows_quarantined), sum(rows_duplicate) FROM ingest_runs"
    ).fetchone()
    conn.close()
    assert balance[0] == first["raw_events"] == balance[1] + balance[2] + balance[3]
    assert (balance[1], balance[2]) == (first["events"], first["quarantine_events"])
    assert balance[3] > 0  # the shop repeats some rows on purpose
    assert first["quarantine_events"] > 0 and first["catalog"] == 40
    ingest_landed(settings, instance=instance)
    again = tables(settings)
    again.pop("ingest_runs"), first.pop("ingest_runs")
    assert again == first


def test_the_partitions_are_the_landed_days_and_all_of_them_materialised(settings, tiny_shop):
    """What the UI lists for the event tables: the three landed days, none missing."""
    instance = DagsterInstance.ephemeral()
    ingest_landed(settings, instance=instance)
    days = ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert instance.get_dynamic_partitions("landing_days") == days
    for asset in ("raw_events", "events", "quarantine_events"):
        assert instance.get_materialized_partitions(AssetKey(asset)) == set(days)
    # A day landed later is a partition of its own, ingested by the next run.
    land_file(settings, SAMPLES / "rees46_2019oct_sample.csv", "2026-01-20")
    ingest_landed(settings, ["2026-01-20"], instance=instance)
    assert instance.get_dynamic_partitions("landing_days") == [*days, "2026-01-20"]
    assert instance.get_materialized_partitions(AssetKey("events")) == {*days, "2026-01-20"}
    with pytest.raises(ValueError, match="nothing landed for 2026-01-19"):
        ingest_landed(settings, ["2026-01-19"], instance=instance)


def event_tables(settings) -> dict[str, list]:
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    try:
        return {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
            for t in ("raw_events", "events", "quarantine_events")
        }
    finally:
        conn.close()


def test_raw_events_and_events_materialised_apart_match_the_single_pass(settings, tiny_shop):
    """The ingest job lands and cleans each day in one pass; each side alone gives the same tables."""
    instance = DagsterInstance.ephemeral()
    ingest_landed(settings, instance=instance)
    together = event_tables(settings)
    assert all(together.values())
    shutil.rmtree(settings.warehouse_path.parent / "partitions")
    settings.warehouse_path.unlink()
    ingest_landed(settings, instance=instance)  # catalog and the rest again, from nothing
    job = build_definitions(settings).resolve_job_def("ingest_job")
    batches = transform.landed_batches(settings)
    tags = {RANGE_START_TAG: batches[0], RANGE_END_TAG: batches[-1]}

    def run(*keys: str):
        return job.execute_in_process(
            instance=instance, tags=tags, asset_selection=[AssetKey(k) for k in keys]
        )

    run("raw_events")
    result = run("events", "quarantine_events")
    assert check_results(instance, result.run_id) == {"events_contract": True, "rows_balance": True}
    assert check_results(instance, run("raw_events").run_id) == {"readable_event_files": True}
    assert event_tables(settings) == together
    with pytest.raises(Exception, match="events and quarantine_events are written together"):
        run("events")
    assert event_tables(settings) == together


def check_descriptions(instance, run_id) -> dict[str, str]:
    return {
        r.dagster_event.event_specific_data.check_name: r.dagster_event.event_specific_data.description
        for r in instance.all_logs(run_id)
        if r.dagster_event and r.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ts,user_id,event_type\n2026-01-06,u1,view\n", r"missing required columns \['item_id'\]"),
        ("", "file is empty"),
        ("\x00\x01PAR1 binary", "not a readable Parquet file"),
    ],
)
def test_an_unreadable_file_is_moved_aside_and_the_rest_ingests(settings, tiny_shop, text, problem):
    instance = DagsterInstance.ephemeral()
    ingest_landed(settings, instance=instance)
    before = tables(settings)
    name = "export.parquet" if "PAR1" in text else "export.csv"
    bad = settings.events_landing / "2026-01-06" / name
    bad.write_text(text)
    [run_id] = ingest_landed(settings, instance=instance)
    checks = check_results(instance, run_id)
    assert checks.pop("readable_event_files") is False
    assert all(checks.values()), checks  # everything else ingested and checked as before
    assert re.search(rf"{name}: {problem}", check_descriptions(instance, run_id)["readable_event_files"])
    assert not bad.exists()
    moved = settings.rejected_landing / "events" / "2026-01-06" / name
    assert moved.read_bytes() == text.encode()
    assert re.search(rf"{name}: {problem}", (moved.parent / f"{name}.reason.txt").read_text())
    after = tables(settings)
    assert after.pop("rejected_files") == 1
    after.pop("ingest_runs"), before.pop("ingest_runs")
    assert after == before  # the day's other files and the other days are all there
    # Moved aside, the file no longer stops or reddens the next run.
    [again] = ingest_landed(settings, instance=instance)
    assert check_results(instance, again)["readable_event_files"] is True


def test_an_empty_file_on_one_day_does_not_block_another_days_ingest(settings, tiny_shop, capsys):
    (settings.events_landing / "2026-01-05" / "empty.csv").write_text("")
    code = main(["ingest", "--batch", "2026-01-06"])
    err = capsys.readouterr().err.strip().splitlines()
    # The requested day is ingested; the catalog step no longer trips over the other day's file.
    assert code == 0 and err == []
    assert (settings.events_landing / "2026-01-05" / "empty.csv").exists()
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    days = conn.execute("SELECT DISTINCT batch_date::VARCHAR FROM events").fetchall()
    conn.close()
    assert days == [("2026-01-06",)]
    # Ingesting that day rejects the file, ingests the rest of it, and says so in one line.
    code = main(["ingest", "--batch", "2026-01-05"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert "1 landed file(s) could not be read" in err[0] and "empty.csv: file is empty" in err[0]
    assert tables(settings)["events"] > 0


def test_an_unreadable_catalog_file_is_moved_aside_and_the_catalog_still_builds(settings, tiny_shop):
    bad = settings.catalog_landing / "catalog-broken.csv"
    bad.write_text("")
    instance = DagsterInstance.ephemeral()
    [run_id] = ingest_landed(settings, instance=instance)
    checks = check_results(instance, run_id)
    assert checks.pop("readable_catalog_files") is False
    assert all(checks.values()), checks
    assert (
        "catalog-broken.csv: file is empty" in check_descriptions(instance, run_id)["readable_catalog_files"]
    )
    assert (settings.rejected_landing / "catalog" / "catalog-broken.csv").exists()
    assert tables(settings)["catalog"] == 40


def test_a_broken_source_file_fails_the_run_naming_it(settings, tiny_shop):
    settings.sources_landing.mkdir(parents=True)
    (settings.sources_landing / "mine.yaml").write_text(
        "name: mine\nread: {columns: [a]}\nevents: {fields: {ts: a}}\n"
    )
    with pytest.raises(Exception, match=r"mine.yaml: events: .*no column or constant for \['user_id'"):
        ingest_landed(settings, instance=DagsterInstance.ephemeral())


def test_online_retail_and_rees46_samples_ingest_with_their_dirt_quarantined(settings, tmp_path):
    land_file(settings, SAMPLES / "online_retail_ii_sample.parquet", "2010-12-10")
    land_file(settings, SAMPLES / "rees46_2019oct_sample.csv", "2019-10-02")
    instance = DagsterInstance.ephemeral()
    # The two days are neighbours among the partitions (no landed day between): one run.
    [run_id] = ingest_landed(settings, instance=instance)
    assert all(check_results(instance, run_id).values())
    assert instance.get_dynamic_partitions("landing_days") == ["2010-12-10", "2019-10-02"]
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    rules = dict(conn.execute("SELECT rule, count(*) FROM quarantine_events GROUP BY rule").fetchall())
    sources = dict(conn.execute("SELECT source, count(*) FROM events GROUP BY source").fetchall())
    refunds = conn.execute("SELECT count(*) FROM events WHERE event_type = 'refund'").fetchone()[0]
    conn.close()
    assert sources.keys() == {"online_retail", "rees46"}
    assert refunds > 0
    assert "missing_user" in rules and any(r.startswith("rejected_by_reader") for r in rules)


def test_a_landed_file_copied_again_is_not_ingested_twice(settings, tmp_path):
    land_file(settings, SAMPLES / "rees46_2019oct_sample.csv", "2019-10-02")
    copy = tmp_path / "resent.csv"
    shutil.copy(SAMPLES / "rees46_2019oct_sample.csv", copy)
    land_file(settings, copy, "2019-10-03")
    ingest_landed(settings, instance=DagsterInstance.ephemeral())
    counts = tables(settings)
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    per_batch = dict(conn.execute("SELECT batch_date::VARCHAR, count(*) FROM events GROUP BY 1").fetchall())
    conn.close()
    assert list(per_batch) == ["2019-10-02"]
    assert counts["raw_events"] == 2 * 401
