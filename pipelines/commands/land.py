"""shopml land: put a data file into the landing folder, where the sensor or `shopml ingest` finds it."""

from __future__ import annotations

import argparse
import shutil
from datetime import datetime, timezone
from pathlib import Path

from data_contracts import adapters
from data_contracts.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", type=Path, help="a file in any supported format (see data_contracts/adapters.py)"
    )
    parser.add_argument("--date", help="landing day YYYY-MM-DD (default: today, UTC)")


def land_file(settings: Settings, path: Path, day: str | None = None) -> Path:
    """Copy ``path`` to landing/catalog/ or landing/events/<day>/ after checking its format."""
    fmt = adapters.sniff_format(path)
    if fmt == "canonical_catalog":
        target = settings.catalog_landing / path.name
    else:
        day = day or datetime.now(timezone.utc).date().isoformat()
        target = settings.events_landing / day / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, target)
    return target


def run(args: argparse.Namespace) -> int:
    target = land_file(Settings.from_env(), args.path, args.date)
    print(f"landed {args.path} as {target}")
    return 0
