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
    "land": (
        "pipelines.commands.land",
        "Check a data file as ingest will read it, then copy it into the landing folder",
    ),
    "sources": (
        "pipelines.commands.sources",
        "List, suggest or check the source files that map exports to the contracts",
    ),
    "ingest": ("pipelines.commands.ingest", "Materialise the ingest assets for everything landed"),
    "summary": ("pipelines.commands.summary", "Print the warehouse tables with row counts"),
    "report": (
        "pipelines.commands.report",
        "Print the latest evaluation of each model against its baselines",
    ),
    "train": ("pipelines.commands.train", "Train a model: recommender or support"),
    "evaluate": ("pipelines.commands.evaluate", "Evaluate a model: recommender or support"),
}
# Exit status of a command stopped by bad input (a file, a source, a setting).
USER_ERROR = 2


def user_error(exc: BaseException) -> str | None:
    """The message of an error caused by input rather than by the code, else None.

    A Dagster run that failed on bad input carries the input's error as its cause.
    """
    for _ in range(5):
        inner = getattr(exc, "user_exception", None)
        if inner is None:
            break
        exc = inner
    if type(exc).__name__ == "Failure" and getattr(exc, "description", None):
        return str(exc.description)
    if isinstance(exc, ValueError | OSError):
        text = (
            str(exc)
            if not isinstance(exc, OSError) or not exc.filename
            else f"{exc.filename}: {exc.strerror}"
        )
        return text or type(exc).__name__
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="shopml", description="The shopml ML platform.")
    debug_help = "on an error, show the full traceback instead of the one-line message"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        command.set_defaults(module=module_name)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(command)
    args = parser.parse_args(argv)
    try:
        return importlib.import_module(args.module).run(args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = user_error(exc)
        if message is None or args.debug:
            raise
        lines = message.strip().splitlines()
        print(f"shopml {args.command}: error: {lines[0]}", file=sys.stderr)
        if len(lines) > 1:
            print(f"  {lines[1]}  (--debug shows the whole error)", file=sys.stderr)
        return USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
