"""shopml land: check a data file as ingest will read it, then put it into the landing folder."""

from __future__ import annotations

import argparse
from datetime import date, datetime, timezone
from pathlib import Path

from data_contracts import adapters
from data_contracts.adapters import reading
from data_contracts.settings import Settings
from pipelines.commands.sources import SAMPLE_ROWS, check_sample
from pipelines.ingest import transform


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="a CSV, TSV, Parquet, JSONL or whitespace-separated file")
    parser.add_argument("--date", help="landing day YYYY-MM-DD (default: today, UTC)")
    parser.add_argument(
        "--source",
        help="the source that reads it (default: the one its header matches); see `shopml sources list`",
    )
    parser.add_argument(
        "--force", action="store_true", help="land it even when none of the sampled rows would be clean"
    )


def land_file(
    settings: Settings,
    path: Path,
    day: str | None = None,
    source: str | None = None,
    force: bool = False,
    instance=None,
) -> Path:
    """Copy ``path`` to landing/catalog/ or landing/events/<day>/ after the checks ingest runs.

    The header picks the source (or ``source`` names it), and the first rows are read, mapped
    and checked: a file ingest could not read raises ``LandingFileError``, as does one whose
    sampled rows would all be quarantined (unless ``force``). A named source is written beside
    the landed file, so that ingest reads it with the same one. An event file's day becomes
    a partition of the event tables in ``instance`` (a Dagster instance), when one is given.
    """
    path = Path(path)
    if day is not None:
        try:
            date.fromisoformat(day)
        except ValueError:
            raise ValueError(f"--date {day!r}: not a day (YYYY-MM-DD)") from None
    sources = transform.landed_sources(settings)
    chosen = sources.get(source) if source else sources.detect(path)
    report = check_sample(path, chosen, SAMPLE_ROWS)
    if report.rows and not report.clean and not force:
        rules = ", ".join(f"{rule} {n}" for rule, n in report.by_rule.most_common(3))
        raise adapters.LandingFileError(
            f"{path}: none of the {report.rows} sampled rows would be clean with source {chosen.name}"
            f" ({rules}); see `shopml sources check {path}`, or land it with --force"
        )
    if chosen.kind == "catalog":
        target = settings.catalog_landing / path.name
    else:
        day = day or datetime.now(timezone.utc).date().isoformat()
        target = settings.events_landing / day / path.name
    reading.copy_file(path, target)
    note = target.with_name(target.name + adapters.registry.NOTE_SUFFIX)
    if source:
        adapters.write_note(target, chosen)
    elif note.exists():  # a note from an earlier landing of this name would pick another source
        note.unlink()
    if instance is not None and chosen.kind != "catalog":
        from pipelines.ingest.partitions import register_landing_days

        register_landing_days(instance, [day])
    return target


def run(args: argparse.Namespace) -> int:
    from pipelines.commands.ingest import dagster_instance

    settings = Settings.from_env()
    target = land_file(settings, args.path, args.date, args.source, args.force, dagster_instance(settings))
    print(f"landed {args.path} as {target}")
    return 0
