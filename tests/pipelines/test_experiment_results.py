"""Experiment results: per-variant rates with delta-method intervals, tests against the
champion, the sample-ratio check, the guard, and ``shopml experiment report | stop``."""

from __future__ import annotations

import math
from datetime import timedelta

import duckdb
import numpy as np
import polars as pl
import pytest
from dagster import DagsterInstance, materialize
from experiment_data import NOW, shop

from data_contracts import warehouse
from data_contracts.landing_log import LandingLog
from pipelines import cli
from pipelines.commands.ingest import ingest_landed, run_job
from pipelines.experiments import (
    Rate,
    compare,
    experiment_results,
    experiment_results_asset,
    sample_ratio_p,
    verdicts,
)
from pipelines.resources import build_resources
from serving.experiments import Experiment, ExperimentRegistry, StopFlag, Variant

SPLIT = Experiment(
    "rec-exp", (Variant("champion", "promoted", 50), Variant("challenger", "recommender:x", 50))
)


def test_a_rate_of_per_shopper_sums_has_the_delta_method_variance():
    # Worked by hand: x = [1, 0, 2], n = [1, 2, 2]; rate 3/5; var x 1, var n 1/3, cov 0;
    # variance (1 - 0 + 0.36 / 3) / (3 * (5/3)^2) = 1.12 / 8.333.
    rate = Rate.of(np.array([1.0, 0.0, 2.0]), np.array([1.0, 2.0, 2.0]))
    assert rate.value == pytest.approx(0.6)
    assert rate.variance == pytest.approx(1.12 / (3 * (5 / 3) ** 2))
    # One list per shopper: the binomial variance of a proportion (sample variance / users).
    x = np.array([1.0] * 30 + [0.0] * 70)
    one = Rate.of(x, np.ones(100))
    assert one.value == pytest.approx(0.3) and one.variance == pytest.approx(x.var(ddof=1) / 100)
    assert math.isnan(Rate.of(np.array([1.0]), np.array([1.0])).variance)  # one shopper: no interval


def test_a_challenger_is_compared_with_the_champion_by_a_two_sided_z_test():
    out = compare(Rate(0.10, 0.0001), Rate(0.12, 0.0001))
    assert out["diff"] == pytest.approx(0.02) and out["lift"] == pytest.approx(0.2)
    assert out["p_value"] == pytest.approx(0.1573, abs=1e-4)  # z = 0.02 / sqrt(0.0002) = 1.414
    half = 1.959964 * math.sqrt(0.0002)
    assert (out["lift_low"], out["lift_high"]) == pytest.approx(((0.02 - half) / 0.1, (0.02 + half) / 0.1))


def test_the_sample_ratio_check_compares_shoppers_with_the_weights():
    assert sample_ratio_p({"a": 500, "b": 500}, {"a": 50, "b": 50}) == pytest.approx(1.0)
    assert sample_ratio_p({"a": 600, "b": 400}, {"a": 50, "b": 50}) < 1e-9
    assert sample_ratio_p({"a": 900, "b": 100}, {"a": 90, "b": 10}) == pytest.approx(1.0)
    assert sample_ratio_p({"a": 500, "b": 500}, {}) is None  # no record of the weights
    assert sample_ratio_p({"a": 5, "c": 5}, {"a": 50, "b": 50}) is None  # a variant not on record


def test_a_worse_challenger_is_significant_and_fails_the_guard(tmp_path):
    registry = ExperimentRegistry(tmp_path)
    registry.register("recommender", SPLIT, {"champion": "v1", "challenger": "v2"})
    conn = duckdb.connect()
    shop(conn, {"champion": 2000, "challenger": 2000}, {"champion": 0.12, "challenger": 0.06})
    results = experiment_results(conn, registry)
    ctr = {r["variant"]: r for r in results.filter(pl.col("metric") == "ctr").iter_rows(named=True)}
    assert ctr["champion"]["champion"] and ctr["champion"]["p_value"] is None
    assert ctr["champion"]["served"] == 4000 and ctr["champion"]["users"] == 2000
    assert ctr["champion"]["ci_low"] < 0.12 < ctr["champion"]["ci_high"]
    assert ctr["challenger"]["significant"] and ctr["challenger"]["diff"] < 0
    assert ctr["challenger"]["srm_p_value"] > 0.01
    carts = results.filter(pl.col("metric") == "add_to_cart")["value"].to_list()
    assert carts == pytest.approx(results.filter(pl.col("metric") == "ctr")["value"].to_list())
    (problem,) = verdicts(results)["rec-exp"]
    assert problem.startswith("challenger is worse than the champion on ctr")


def test_an_equal_challenger_passes_and_a_skewed_split_fails(tmp_path):
    registry = ExperimentRegistry(tmp_path)
    registry.register("recommender", SPLIT, {})
    conn = duckdb.connect()
    shop(conn, {"champion": 1000, "challenger": 1000}, {"champion": 0.1, "challenger": 0.1}, seed=1)
    assert verdicts(experiment_results(conn, registry)) == {"rec-exp": []}
    skewed = duckdb.connect()
    shop(skewed, {"champion": 1200, "challenger": 800}, {"champion": 0.1, "challenger": 0.1}, seed=1)
    (problem,) = verdicts(experiment_results(skewed, registry))["rec-exp"]
    assert problem.startswith("sample ratio mismatch")


SUPPORT_SPLIT = Experiment(
    "chat-exp", (Variant("champion", "promoted", 50), Variant("challenger", "support:x", 50))
)


def support_log(conn, sessions: dict[str, int], up: dict[str, float], handover: dict[str, float]) -> None:
    """support_replies and feedback: ``sessions[v]`` anonymous sessions of variant v, four
    replies each, handed over with probability ``handover[v]``; half the replies are rated,
    thumbs up with probability ``up[v]`` (a first rating the other way is overridden later)."""
    rng = np.random.default_rng(0)
    replies, feedback = [], []
    for variant, count in sessions.items():
        for s in range(count):
            for k in range(4):
                reply_id = f"{variant}-{s}-{k}"
                replies.append(
                    (
                        reply_id,
                        f"s-{variant}-{s}",
                        None,
                        "chat-exp",
                        variant,
                        bool(rng.random() < handover[variant]),
                    )
                )
                if k % 2 == 0:
                    rating = 1 if rng.random() < up[variant] else -1
                    feedback.append((reply_id, "reply", -rating, NOW))
                    feedback.append((reply_id, "reply", rating, NOW + timedelta(minutes=1)))
    conn.execute(
        "CREATE TABLE support_replies (reply_id TEXT, session_id TEXT, user_id TEXT, experiment TEXT, "
        "variant TEXT, handover BOOLEAN)"
    )
    conn.executemany("INSERT INTO support_replies VALUES (?, ?, ?, ?, ?, ?)", replies)
    conn.execute("CREATE TABLE feedback (target_id TEXT, target_kind TEXT, rating BIGINT, ts TIMESTAMPTZ)")
    conn.executemany("INSERT INTO feedback VALUES (?, ?, ?, ?)", feedback)


def test_a_support_challenger_with_fewer_thumbs_up_or_more_handovers_fails_the_guard(tmp_path):
    registry = ExperimentRegistry(tmp_path)
    registry.register("support", SUPPORT_SPLIT, {"champion": "support:a", "challenger": "support:x"})
    conn = duckdb.connect()
    support_log(conn, {"champion": 800, "challenger": 800}, {"champion": 0.8, "challenger": 0.8},
                {"champion": 0.1, "challenger": 0.1})  # fmt: skip
    results = experiment_results(conn, registry)
    assert set(results["service"]) == {"support"} and set(results["metric"]) == {"thumbs_up", "handover"}
    up = {r["variant"]: r for r in results.filter(pl.col("metric") == "thumbs_up").iter_rows(named=True)}
    assert up["champion"]["served"] == 3200 and up["champion"]["users"] == 800  # sessions, four replies
    assert up["champion"]["ci_low"] < 0.8 < up["champion"]["ci_high"]  # the last rating counts
    assert verdicts(results) == {"chat-exp": []}

    worse = duckdb.connect()
    support_log(worse, {"champion": 800, "challenger": 800}, {"champion": 0.8, "challenger": 0.6},
                {"champion": 0.1, "challenger": 0.2})  # fmt: skip
    results = experiment_results(worse, registry)
    problems = verdicts(results)["chat-exp"]
    assert [p.split(":")[0] for p in problems] == [
        "challenger is worse than the champion on thumbs_up",
        "challenger is worse than the champion on handover",
    ]
    # Fewer handovers is better: a challenger that hands over less is not "worse".
    better = duckdb.connect()
    support_log(better, {"champion": 800, "challenger": 800}, {"champion": 0.8, "challenger": 0.8},
                {"champion": 0.2, "challenger": 0.1})  # fmt: skip
    results = experiment_results(better, registry)
    handover = results.filter((pl.col("metric") == "handover") & ~pl.col("champion")).row(0, named=True)
    assert handover["significant"] and handover["diff"] < 0 and not handover["worse"]
    assert verdicts(results) == {"chat-exp": []}


def test_a_cart_outside_the_window_after_the_click_does_not_count(tmp_path):
    conn = duckdb.connect()
    shop(conn, {"champion": 10, "challenger": 10}, {"champion": 1.0, "challenger": 1.0})
    registry = ExperimentRegistry(tmp_path)
    carts = experiment_results(conn, registry, window_hours=0.5).filter(pl.col("metric") == "add_to_cart")
    assert carts["value"].to_list() == [0.0, 0.0]  # carted an hour after the click
    carts = experiment_results(conn, registry, window_hours=2).filter(pl.col("metric") == "add_to_cart")
    assert carts["value"].to_list() == [1.0, 1.0]


def test_the_registry_keeps_the_first_record_and_a_stop_reaches_the_flag(tmp_path):
    registry = ExperimentRegistry(tmp_path)
    first = registry.register("recommender", SPLIT, {"champion": "v1"})
    assert registry.register("recommender", SPLIT, {"champion": "v9"}) == first
    assert [v["weight"] for v in first["variants"]] == [50, 50] and first["stopped_at"] is None
    flag = StopFlag(registry, "rec-exp", refresh_s=0)
    assert not flag()
    stopped = registry.stop("rec-exp", "guard failed")
    assert stopped["stop_reason"] == "guard failed" and flag()
    assert registry.stop("rec-exp", "again")["stop_reason"] == "guard failed"  # the first stop stays
    with pytest.raises(ValueError, match="no experiment 'nope' was started .known: rec-exp"):
        registry.stop("nope", "x")
    (tmp_path / "rec-exp.json").write_text("{broken")
    with pytest.raises(ValueError, match="rec-exp.json cannot be read"):
        registry.get("rec-exp")


def test_the_guard_check_fails_on_a_worse_challenger_and_names_it(settings):
    ExperimentRegistry(settings.experiments_dir).register("recommender", SPLIT, {})
    with warehouse.connect(settings.warehouse_path) as conn:
        shop(conn, {"champion": 2000, "challenger": 2000}, {"champion": 0.12, "challenger": 0.06})
    result = materialize([experiment_results_asset], resources=build_resources(settings))
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "experiment_guard" and not check.passed
    assert "challenger is worse" in check.metadata["failing"].value["rec-exp"][0]
    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM experiment_results").fetchone() == (6,)


def test_the_feedback_loop_job_computes_the_results_and_the_cli_reports_and_stops(
    settings, tiny_shop, capsys
):
    ExperimentRegistry(settings.experiments_dir).register("recommender", SPLIT, {})
    log = LandingLog(settings)
    for n, variant in enumerate(["champion", "challenger"] * 3):
        rec = {"rec_id": f"r{n}", "ts": NOW, "user_id": f"u00000{n}", "model_version": "v1"}
        log.write(
            "served", {**rec, "items": ["i000001"], "experiment": "rec-exp", "variant": variant}, now=NOW
        )
    click = {"ts": NOW, "user_id": "u000000", "item_id": "i000001", "source": "serving"}
    log.write("events", {**click, "event_id": "c1", "event_type": "rec_click", "rec_id": "r0"}, now=NOW)
    instance = DagsterInstance.ephemeral()
    ingest_landed(settings, instance=instance)
    run_job(settings, "feedback_loop_job", instance=instance)
    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        rows = conn.execute(
            "SELECT variant, users, served, value FROM experiment_results WHERE metric = 'ctr' ORDER BY 1"
        ).fetchall()
    assert rows == [("challenger", 3, 3, 0.0), ("champion", 3, 3, pytest.approx(1 / 3))]
    assert cli.main(["experiment", "report"]) == 0
    out = capsys.readouterr().out
    assert "experiment rec-exp (recommender; running" in out and "guard: passes" in out and "champion*" in out
    assert cli.main(["experiment", "stop", "rec-exp", "--reason", "test"]) == 0
    assert "every worker answers with the champion 'champion'" in capsys.readouterr().out
    assert cli.main(["experiment", "report"]) == 0
    assert "experiment rec-exp (recommender; stopped" in capsys.readouterr().out
    assert cli.main(["experiment", "stop", "other"]) == cli.USER_ERROR
