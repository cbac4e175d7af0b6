"""The retraining loop: the served-data sensor, planned challenger experiments that a starting
service serves, and the decision that promotes or rejects a challenger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from dagster import SkipReason, build_sensor_context, materialize
from experiment_data import shop

from data_contracts import warehouse
from data_contracts.settings import Settings
from pipelines.experiments import experiment_results
from pipelines.resources import build_resources
from pipelines.retraining import count_new_rows, decide, experiment_decisions, new_served_data_sensor
from serving.experiments import ExperimentRegistry, experiment_from_record, planned_experiment

NOW = datetime(2026, 1, 6, 12, tzinfo=UTC)


def served_lines(settings: Settings, kind: str, day: str, n: int, name: str = "a") -> None:
    folder = settings.landing_dir / kind / day
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{kind}-{name}.jsonl").open("a") as handle:
        handle.write("".join(json.dumps({"row": i}) + "\n" for i in range(n)))


def test_new_rows_are_counted_from_where_the_last_count_stopped(settings):
    served_lines(settings, "served", "2026-01-05", 3)
    served_lines(settings, "replies", "2026-01-05", 2)
    served_lines(settings, "searches", "2026-01-05", 50)  # searches are not served rows
    added, files = count_new_rows(settings.landing_dir, {})
    assert added == 5 and sorted(lines for _, lines in files.values()) == [2, 3]
    served_lines(settings, "served", "2026-01-05", 4)
    served_lines(settings, "served", "2026-01-06", 1)
    added, files = count_new_rows(settings.landing_dir, files)
    assert added == 5
    # A file that shrank was replaced: counted whole again.
    path = settings.landing_dir / "served" / "2026-01-05" / "served-a.jsonl"
    path.write_text('{"row": 0}\n')
    added, _ = count_new_rows(settings.landing_dir, files)
    assert added == 1


def test_the_sensor_retrains_once_enough_new_rows_landed(settings, monkeypatch):
    monkeypatch.setenv("SHOPML_RETRAIN_MIN_NEW_ROWS", "10")
    served_lines(settings, "served", "2026-01-05", 6)
    context = build_sensor_context()
    first = new_served_data_sensor(context)
    assert isinstance(first, SkipReason) and "6 new served rows of 10" in first.skip_message
    served_lines(settings, "replies", "2026-01-05", 5)
    request = new_served_data_sensor(build_sensor_context(cursor=context.cursor))
    assert request.tags["shopml/new_served_rows"] == "11" and request.run_key.startswith("served-")
    cursor = json.dumps({"files": count_new_rows(settings.landing_dir, {})[1], "pending": 0})
    assert isinstance(new_served_data_sensor(build_sensor_context(cursor=cursor)), SkipReason)


def test_a_planned_experiment_is_served_until_it_is_stopped_or_over(tmp_path, monkeypatch):
    monkeypatch.delenv("SHOPML_RECOMMENDER_VARIANTS", raising=False)
    registry = ExperimentRegistry(tmp_path)
    assert planned_experiment("recommender", registry) is None
    record = registry.plan("recommender", "recommender:old", "recommender:new", 10, 7, "passed the gate")
    assert registry.plan("recommender", "recommender:old", "recommender:new", 10, 7, "again") == record
    experiment = planned_experiment("recommender", registry)
    assert experiment == experiment_from_record(record)
    assert [(v.name, v.model, v.weight) for v in experiment.variants] == [
        ("champion", "recommender:old", 90),
        ("challenger", "recommender:new", 10),
    ]
    assert experiment.running() and experiment.end - experiment.start == timedelta(days=7)
    assert planned_experiment("support", registry) is None  # another service's
    # Over: nothing planned is served any more.
    registry.plan("recommender", "recommender:old", "recommender:x", 10, 7, "r", now=NOW - timedelta(days=30))
    assert planned_experiment("recommender", registry).name == record["name"]
    registry.stop(record["name"], "rejected", decision="rejected")
    assert planned_experiment("recommender", registry) is None
    assert registry.get(record["name"])["decision"] == "rejected"


@pytest.fixture
def planned(tmp_path):
    registry = ExperimentRegistry(tmp_path)
    record = registry.plan("recommender", "recommender:old", "recommender:new", 50, 7, "r", now=NOW)
    return registry, record


def test_a_better_challenger_is_promoted_a_worse_one_rejected(planned):
    registry, record = planned
    during = NOW + timedelta(days=1)
    better = duckdb.connect()
    shop(better, {"champion": 1500, "challenger": 1500}, {"champion": 0.08, "challenger": 0.14},
         experiment=record["name"])  # fmt: skip
    action, why = decide(experiment_results(better, registry), record, min_users=100, now=during)
    assert action == "promote" and why.startswith("the challenger is better on ctr")
    worse = duckdb.connect()
    shop(worse, {"champion": 1500, "challenger": 1500}, {"champion": 0.14, "challenger": 0.08},
         experiment=record["name"])  # fmt: skip
    action, why = decide(experiment_results(worse, registry), record, min_users=100, now=during)
    assert action == "reject" and "worse than the champion on ctr" in why


def test_an_even_challenger_runs_on_then_is_promoted_with_enough_shoppers(planned):
    registry, record = planned
    conn = duckdb.connect()
    shop(conn, {"champion": 300, "challenger": 300}, {"champion": 0.1, "challenger": 0.1}, seed=1,
         experiment=record["name"])  # fmt: skip
    results = experiment_results(conn, registry)
    assert decide(results, record, min_users=200, now=NOW + timedelta(days=1))[0] == "continue"
    over = NOW + timedelta(days=8)
    assert decide(results, record, min_users=200, now=over)[0] == "promote"
    action, why = decide(results, record, min_users=1000, now=over)
    assert action == "keep" and "too few shoppers" in why
    assert decide(results.clear(), record, min_users=1, now=over)[0] == "keep"


@pytest.fixture
def promotions_restored(settings, monkeypatch):
    """The promotion records as they were before the test: BentoML fixes its home on first use
    in a process, so a promotion written here would reach later tests."""
    from training.model_store import promotion_path

    monkeypatch.setenv("BENTOML_HOME", str(settings.model_store.resolve()))
    paths = [promotion_path(name) for name in ("recommender", "support")]
    before = {path: path.read_bytes() if path.exists() else None for path in paths}
    yield
    for path, content in before.items():
        if content is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(content)


def test_the_decisions_asset_promotes_the_challenger_and_stops_the_experiment(settings, promotions_restored):
    from training.model_store import read_promotion

    registry = ExperimentRegistry(settings.experiments_dir)
    now = datetime.now(UTC)
    record = registry.plan("recommender", "recommender:old", "recommender:new", 50, 7, "r", now=now)
    rejected = registry.plan("support", "support:old", "support:bad", 50, 7, "r", now=now)
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    with warehouse.connect(settings.warehouse_path) as conn:
        scratch = duckdb.connect()
        shop(scratch, {"champion": 300, "challenger": 300}, {"champion": 0.1, "challenger": 0.1},
             experiment=record["name"])  # fmt: skip
        results = experiment_results(scratch, registry)
        # The support experiment: a challenger with a skewed split (sample-ratio mismatch).
        skewed = duckdb.connect()
        shop(skewed, {"champion": 900, "challenger": 300}, {"champion": 0.1, "challenger": 0.1},
             experiment=rejected["name"])  # fmt: skip
        warehouse.replace_table(
            conn, "experiment_results", results.vstack(experiment_results(skewed, registry))
        )
    (settings.experiments_dir / "broken.json").write_text("{not json")
    # BentoML fixes its home on first use in a process: compare with what is there now.
    support_before = read_promotion("support")
    result = materialize([experiment_decisions], resources=build_resources(settings))
    assert result.success
    metadata = result.asset_materializations_for_node("experiment_decisions")[0].metadata
    assert "broken.json" in metadata["damaged_records"].value[0]
    # Still running (inside its seven days): nothing decided for the even recommender split.
    assert registry.get(record["name"])["stopped_at"] is None
    stopped = registry.get(rejected["name"])
    assert stopped["decision"] == "rejected" and "sample ratio mismatch" in stopped["stop_reason"]
    assert read_promotion("support") == support_before  # the champion stays

    # Once the experiment is over, the guard having passed, the challenger is promoted.
    over = dict(
        record, end=(now - timedelta(days=1)).isoformat(), start=(now - timedelta(days=8)).isoformat()
    )
    registry._write(over)
    assert materialize([experiment_decisions], resources=build_resources(settings)).success
    assert registry.get(record["name"])["decision"] == "promoted"
    promotion = read_promotion("recommender")
    assert promotion["tag"] == "recommender:new" and promotion["history"][-1]["on"] == "experiment"
