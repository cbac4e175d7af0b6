"""The recommender assets on the tiny shop: train (tiny quick run), evaluate, promote."""

from __future__ import annotations

import json

import pytest
from dagster import DagsterInstance

from pipelines.commands.ingest import ingest_landed, run_job


@pytest.fixture
def tiny_training(monkeypatch, tmp_path):
    monkeypatch.setenv("SHOPML_MODEL_STORE", str(tmp_path / "bentoml"))
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))


def test_train_evaluate_and_promote_on_the_tiny_shop(settings, tiny_shop, tiny_training):
    instance = DagsterInstance.ephemeral()
    ingest_landed(settings, instance=instance)
    run_id = run_job(settings, "recommender_job", instance=instance)
    assert instance.get_run_by_id(run_id).is_success
    report = json.loads((settings.reports_dir / "recommender.json").read_text())
    assert report["tag"].startswith("recommender:")
    assert {"hr@10", "ndcg@10", "mrr", "baselines"} <= report.keys()
    assert (settings.reports_dir / "recommender.png").stat().st_size > 1000
    assert isinstance(report["promotion"]["promoted"], bool)
    from pipelines.commands.report import format_report

    table = format_report(settings)
    assert report["tag"] in table and "most_popular" in table and "cooccurrence" in table
    assert "support: no evaluation yet" in table
