"""`shopml train support` and `shopml evaluate support` on the committed samples with tiny models."""

from __future__ import annotations

import argparse
import json

import pytest

from training.support import cli
from training.support.corpus import SAMPLE_DIR


def parse(add, argv):
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def test_train_then_evaluate(settings, tiny_encoder_dir, tiny_lm_dir, tmp_path, capsys):
    common = [
        "--bitext",
        str(SAMPLE_DIR / "bitext" / "bitext_sample.csv"),
        "--abcd",
        str(SAMPLE_DIR / "abcd"),
        "--eval-limit",
        "10",
        "--latency-queries",
        "2",
        "--generation-eval-limit",
        "1",
        "--near-duplicate-threshold",
        "0.98",
    ]
    train_args = parse(
        cli.add_train_arguments,
        common
        + [
            "--encoder",
            str(tiny_encoder_dir),
            "--generator",
            str(tiny_lm_dir),
            "--ranker-steps",
            "3",
            "--generator-steps",
            "1",
            "--router-steps",
            "3",
        ]
        + ["--report-dir", str(tmp_path / "train")],
    )
    assert cli.train(train_args) == 0
    out = capsys.readouterr().out
    assert "| ranker_r@1 |" in out and "promotion:" in out
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert metrics["promotion"]["tag"].startswith("support:")
    assert metrics["corpus"]["leaked_test_rows"] == 0
    # The router was trained and its threshold set on the dev half of the dev set.
    assert metrics["router_steps"] == 3 and 0.0 <= metrics["router_dev_accuracy"] <= 1.0
    assert (tmp_path / "train" / "report.png").read_bytes().startswith(b"\x89PNG")

    eval_args = parse(
        cli.add_evaluate_arguments,
        common + ["--tag", metrics["promotion"]["tag"], "--report-dir", str(tmp_path / "eval")],
    )
    assert cli.evaluate(eval_args) == 0
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["test_rows"] == metrics["test_rows"]
    assert again["retrieval_recall@5"] == pytest.approx(metrics["retrieval_recall@5"])


def test_bad_profile_is_rejected():
    with pytest.raises(SystemExit):
        parse(cli.add_train_arguments, ["--profile", "huge"])


def test_every_support_setting_flag_reaches_the_config():
    from training.support.config import EVALUATE_FLAGS, TRAIN_FLAGS

    parser = argparse.ArgumentParser()
    cli.add_train_arguments(parser)
    text = parser.format_help()
    assert all(f"--{name.replace('_', '-')}" in text for name in EVALUATE_FLAGS + TRAIN_FLAGS)
    args = parser.parse_args(
        [
            "--profile",
            "full",
            "--generator-candidates",
            "2",
            "--no-router",
            "--lora-layers",
            "4",
            "--threads",
            "1",
        ]
    )
    config = cli._config(args)
    assert (config.generator_candidates, config.router, config.lora_layers, config.num_threads) == (
        2,
        False,
        4,
        1,
    )
    assert config.generator_steps == 1500  # the full profile's, as no flag was given
    assert cli._config(parser.parse_args(["--no-generator"])).generator is None
    # Evaluation takes only the flags that change what is evaluated, not how a model trains.
    evaluate = argparse.ArgumentParser()
    cli.add_evaluate_arguments(evaluate)
    assert "--generator-steps" not in evaluate.format_help() and "--eval-limit" in evaluate.format_help()
