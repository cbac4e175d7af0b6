"""The one console script: ``shopml <command> --help``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from types import ModuleType

# Each command is a module with ``add_arguments(parser)`` and ``run(args) -> int``, its
# parsing beside the part it drives. A command's module is imported when it is used, so
# ``shopml --help`` stays fast and every part runs without the others.


def _run() -> ModuleType:
    from pipelines import main_job

    return main_job


def _generate() -> ModuleType:
    from pipelines.commands import generate

    return generate


def _land() -> ModuleType:
    from pipelines.commands import land

    return land


def _sources() -> ModuleType:
    from pipelines.commands import sources

    return sources


def _ingest() -> ModuleType:
    from pipelines.commands import ingest

    return ingest


def _features() -> ModuleType:
    from pipelines.commands import features

    return features


def _summary() -> ModuleType:
    from pipelines.commands import summary

    return summary


def _report() -> ModuleType:
    from pipelines.commands import report

    return report


def _experiment() -> ModuleType:
    from pipelines.commands import experiment

    return experiment


def _serve() -> ModuleType:
    from pipelines.commands import serve

    return serve


def _simulate() -> ModuleType:
    from pipelines.commands import simulate

    return simulate


def _train() -> ModuleType:
    from pipelines.commands import train

    return train


def _evaluate() -> ModuleType:
    from pipelines.commands import evaluate

    return evaluate


COMMANDS: dict[str, tuple[Callable[[], ModuleType], str]] = {
    "run": (_run, "Run the main job: synthetic shop → warehouse (→ models) → summary"),
    "generate": (_generate, "Write a synthetic shop to the landing folder"),
    "land": (_land, "Check a data file as ingest will read it, then copy it into the landing folder"),
    "sources": (_sources, "List, suggest or check the source files that map exports to the contracts"),
    "ingest": (_ingest, "Materialise the ingest assets for everything landed"),
    "features": (_features, "Restore the online store from the offline store (after it was lost)"),
    "summary": (_summary, "Print the warehouse tables with row counts"),
    "report": (_report, "Print the latest evaluation of each model against its baselines"),
    "experiment": (_experiment, "Report a traffic split's results per variant, or stop it"),
    "serve": (_serve, "Serve replicas of each service behind HAProxy on their usual ports"),
    "simulate": (
        _simulate,
        "Replay held-out shoppers against the live recommender (loopback), clicking hits",
    ),
    "train": (_train, "Train a model: recommender or support"),
    "evaluate": (_evaluate, "Evaluate a model: recommender or support"),
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
    for name, (module, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        command.set_defaults(module=module)
        if name == chosen:
            module().add_arguments(command)
    args = parser.parse_args(argv)
    try:
        return args.module().run(args) or 0
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
