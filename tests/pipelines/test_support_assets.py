"""The support assets with the quick profile (real MiniLM, generator as the profile says)."""

from __future__ import annotations

import json

import pytest
from dagster import DagsterInstance

from pipelines.commands.ingest import run_job

pytestmark = pytest.mark.slow


def test_support_job_trains_evaluates_and_reports(settings, monkeypatch, tmp_path):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    instance = DagsterInstance.ephemeral()
    run_job(settings, "feedback_loop_job", instance=instance)
    run_id = run_job(settings, "support_job", instance=instance)
    assert instance.get_run_by_id(run_id).is_success
    report = json.loads((settings.reports_dir / "support.json").read_text())
    assert report["tag"].startswith("support")
    assert 0 <= report["ranker_r@1"] <= 1
    assert (settings.reports_dir / "support.png").stat().st_size > 1000
