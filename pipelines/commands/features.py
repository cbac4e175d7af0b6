"""shopml features restore: fill an empty or lost online store from the offline store."""

from __future__ import annotations

import argparse
import json

from data_contracts.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=["restore"],
        help="restore: reload every offline source into the online store (a full materialisation), "
        "then replay the events the services logged since the last ingest",
    )


def run(args: argparse.Namespace) -> int:
    from features.restore import restore

    print(json.dumps({"restored": restore(Settings.from_env()).as_dict()}))
    return 0
