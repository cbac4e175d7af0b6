"""The one console script: ``shopml <command> --help``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Commands whose parsing lives with the part they drive: "command": "module" with
# ``add_arguments(parser)`` and ``run(args) -> int``. Imported only when used, so
# ``shopml --help`` stays fast and every part runs without the others.
COMMANDS = {
    "run": ("pipelines.main_job", "Run the main job: synthetic shop → warehouse (→ models) → summary"),
    "generate": ("pipelines.commands.generate", "Write a synthetic shop to the landing folder"),
    "land": ("pipelines.commands.land", "Copy a data file (any supported format) into the landing folder"),
    "ingest": ("pipelines.commands.ingest", "Materialise the ingest assets for everything landed"),
    "summary": ("pipelines.commands.summary", "Print the warehouse tables with row counts"),
    "report": (
        "pipelines.commands.report",
        "Print the latest evaluation of each model against its baselines",
    ),
    "train": ("pipelines.commands.train", "Train a model: recommender or support"),
    "evaluate": ("pipelines.commands.evaluate", "Evaluate a model: recommender or support"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="shopml", description="The shopml ML platform.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = argv[0] if argv else None
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(module=module_name)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(command)
    args = parser.parse_args(argv)
    return importlib.import_module(args.module).run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
