from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelines.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command):
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: shopml" in result.stdout


def test_main_job_on_a_tiny_shop_prints_the_warehouse_and_a_json_line(settings, capsys, monkeypatch):
    # The model store stays where BentoML first put it in this process; the main job's
    # services (subprocesses) inherit it.
    monkeypatch.setenv("SHOPML_TRAINING_PROFILE", "smoke")  # both models in seconds
    code = main(
        ["run", "--no-serve", "--users", "40", "--items", "30", "--days", "2", "--events-per-day", "300"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "user_sequences" in out and "quarantine_events" in out
    assert "bentos: recommender:" in out and ", support:" in out
    figures = json.loads(out.strip().splitlines()[-1])
    assert set(figures) == {"seconds", "steps", "peak_rss_mb"}
    assert set(figures["steps"]) == {
        "generate",
        "ingest",
        "features",
        "search",
        "feedback_loop",
        "recommender",
        "support",
        "bentos",
    }
    assert (settings.reports_dir / "support.json").exists() and (
        settings.reports_dir / "recommender.json"
    ).exists()


def test_land_refuses_a_file_in_no_known_format_in_one_line(settings, tmp_path, capsys):
    path = tmp_path / "odd.csv"
    path.write_text("a,b\n1,2\n")
    assert main(["land", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "odd.csv: columns ['a', 'b'] match no known format" in err[0]
    assert not settings.landing_dir.exists()
    with pytest.raises(ValueError, match="odd.csv: columns"):
        main(["--debug", "land", str(path)])


@pytest.mark.slow
def test_main_job_once_serves_real_requests_and_logs_them(settings, capsys, monkeypatch):
    monkeypatch.setenv("SHOPML_TRAINING_PROFILE", "smoke")
    code = main(["run", "--once", "--users", "40", "--items", "30", "--days", "2", "--events-per-day", "300"])
    out = capsys.readouterr().out
    assert code == 0
    figures = json.loads([line for line in out.splitlines() if line.startswith('{"seconds"')][-1])
    assert "serve" in figures["steps"]
    assert "POST http://127.0.0.1:3100/recommend ->" in out
    assert "POST http://127.0.0.1:3101/chat ->" in out and "  shopper:   something cheaper" in out
    assert "POST http://127.0.0.1:3100/search ->" in out and '"index_ready": true' in out
    assert list(settings.landing_dir.glob("searches/*/*.jsonl")), "the served search was logged"
    assert list(settings.landing_dir.glob("served/*/*.jsonl")), "the served list was logged for the pipeline"
    assert list(settings.events_landing.glob("*/events-*.jsonl")), "the click was logged as an event"
