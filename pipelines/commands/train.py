"""shopml train recommender|support: dispatches to the trainer of each model."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from types import ModuleType


def _recommender() -> ModuleType:
    from training.recommender import cli

    return cli


def _support() -> ModuleType:
    from training.support import cli

    return cli


# Each model's command line: ``add_train_arguments``, ``train``, ``add_evaluate_arguments``
# and ``evaluate``; both are imported to list their flags.
TRAINERS: dict[str, Callable[[], ModuleType]] = {"recommender": _recommender, "support": _support}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    for name, trainer in TRAINERS.items():
        model = sub.add_parser(name, help=f"train the {name} model")
        model.set_defaults(trainer=trainer)
        trainer().add_train_arguments(model)


def run(args: argparse.Namespace) -> int:
    return args.trainer().train(args) or 0
