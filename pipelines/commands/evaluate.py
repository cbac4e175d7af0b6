"""shopml evaluate recommender|support: dispatches to the evaluation of each model."""

from __future__ import annotations

import argparse

from pipelines.commands.train import TRAINERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    for name, trainer in TRAINERS.items():
        model = sub.add_parser(name, help=f"evaluate the {name} model")
        model.set_defaults(trainer=trainer)
        trainer().add_evaluate_arguments(model)


def run(args: argparse.Namespace) -> int:
    return args.trainer().evaluate(args) or 0
