"""shopml experiment report | stop: the traffic splits' results, and sending a split back to its champion."""

from __future__ import annotations

import argparse
import json

from data_contracts import warehouse
from data_contracts.settings import Settings
from serving.experiments import ExperimentRegistry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    report = sub.add_parser("report", help="Per variant: users, lists, rates with intervals, lift, p-values")
    report.add_argument("name", nargs="?", help="one experiment (default: every one that served traffic)")
    report.add_argument(
        "--window-hours", type=float, default=24.0, help="a click's add-to-cart or purchase counts this long"
    )
    report.add_argument("--json", action="store_true", help="one JSON object per row instead of the table")
    stop = sub.add_parser("stop", help="Send all of an experiment's traffic back to its champion")
    stop.add_argument("name")
    stop.add_argument("--reason", default="stopped by hand", help="recorded with the stop")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    registry = ExperimentRegistry(settings.experiments_dir)
    if args.action == "stop":
        record = registry.stop(args.name, args.reason)
        print(
            f"experiment {record['name']} stopped at {record['stopped_at'][:19]} ({record['stop_reason']}): "
            f"every worker answers with the champion {record['variants'][0]['name']!r} within seconds"
        )
        return 0
    from pipelines.experiments import experiment_results, format_results

    if not settings.warehouse_path.exists():
        raise ValueError(f"no warehouse at {settings.warehouse_path}: run `shopml run` first")
    with warehouse.connect(settings.warehouse_path, read_only=True) as conn:
        results = experiment_results(conn, registry, args.window_hours, only=args.name)
    if args.name and results.is_empty():
        raise ValueError(f"experiment {args.name!r} has no served traffic in the warehouse")
    if args.json:
        for row in results.iter_rows(named=True):
            print(json.dumps(row, default=str))
    else:
        print(format_results(results))
    return 0
