"""shopml train recommender|support: dispatches to the trainer of each model."""

from __future__ import annotations

import argparse
import importlib

TRAINERS = {
    "recommender": "training.recommender.cli",
    "support": "training.support.cli",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    for name, module_name in TRAINERS.items():
        model = sub.add_parser(name, help=f"train the {name} model")
        model.set_defaults(trainer=module_name)
        importlib.import_module(module_name).add_train_arguments(model)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(args.trainer).train(args) or 0
