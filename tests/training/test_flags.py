"""Flags derived from a settings dataclass: types, choices, help, and what is left out."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from training.flags import add_flags, flag_values
from training.recommender import cli
from training.recommender.settings import TRAIN_FLAGS, TrainSettings, settings_for


@dataclass
class Example:
    mode: Literal["fast", "slow"] = field(default="fast", metadata={"help": "how to run"})
    steps: int = 10
    cap: float | None = None
    devices: int | str = "auto"
    out: Path = Path("out")
    verbose: bool = False


def parser_for(*names: str, **kw) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_flags(parser, Example, names or ("mode", "steps", "cap", "devices", "out", "verbose"), **kw)
    return parser


def test_flags_are_typed_from_the_annotations():
    args = parser_for().parse_args(
        ["--mode", "slow", "--steps", "3", "--cap", "1.5", "--devices", "2", "--out", "x", "--verbose"]
    )
    assert flag_values(args, Example) == {
        "mode": "slow",
        "steps": 3,
        "cap": 1.5,
        "devices": 2,
        "out": Path("x"),
        "verbose": True,
    }
    assert parser_for().parse_args(["--devices", "auto"]).devices == "auto"
    with pytest.raises(argparse.ArgumentError):
        parser_for().parse_args(["--mode", "medium"])
    with pytest.raises(argparse.ArgumentError):
        parser_for().parse_args(["--steps", "many"])


def test_flags_left_out_are_not_values_and_help_shows_the_default():
    assert flag_values(parser_for().parse_args([]), Example) == {}
    text = parser_for("mode", "steps", defaults={"steps": 5}, defaults_from="in the demo").format_help()
    assert "how to run (default fast)" in text and "(default 5 in the demo)" in text


def test_every_training_setting_flag_reaches_the_settings():
    parser = argparse.ArgumentParser()
    cli.add_train_arguments(parser)
    args = parser.parse_args(
        ["--max-cpu-minutes", "3", "--loss", "gbce", "--devices", "2", "--max-epochs", "4"]
    )
    settings = settings_for("quick", **flag_values(args, TrainSettings))
    assert (settings.max_cpu_minutes, settings.loss, settings.devices, settings.max_epochs) == (
        3.0,
        "gbce",
        2,
        4,
    )
    assert settings.max_minutes == 5.0  # the quick profile's, as no flag was given
    assert all(f"--{name.replace('_', '-')}" in parser.format_help() for name in TRAIN_FLAGS)
