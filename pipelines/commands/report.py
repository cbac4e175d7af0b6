"""shopml report: the latest evaluation of each model as a table (from the reports folder)."""

from __future__ import annotations

import argparse
import json

from data_contracts.settings import Settings

# The figures worth a glance per model; the JSON files hold everything.
COLUMNS = {
    "recommender": ("hr@10", "ndcg@10", "mrr", "coverage"),
    "support": ("retrieval_recall@1", "retrieval_recall@5", "ranker_r@1", "rouge_l", "handover_rate"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def format_report(settings: Settings) -> str:
    lines = []
    for model, columns in COLUMNS.items():
        path = settings.reports_dir / f"{model}.json"
        if not path.exists():
            lines.append(f"{model}: no evaluation yet (run `shopml run` or the {model}_job)")
            continue
        report = json.loads(path.read_text())
        promotion = report.get("promotion", {})
        lines.append(
            f"{model}  {report.get('tag')}  evaluated {report.get('at', '?')[:19]}  "
            f"promoted: {promotion.get('promoted')} ({promotion.get('reason', '')})"
        )
        rows = {model: report, **report.get("baselines", {})}
        lines.append("  " + f"{'':<14}" + "".join(f"{c:>20}" for c in columns))
        for name, values in rows.items():
            lines.append(
                "  " + f"{name:<14}" + "".join(f"{_number(values.get(c, '-')):>20}" for c in columns)
            )
        lines.append(f"  plot: {settings.reports_dir / (model + '.png')}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print(format_report(Settings.from_env()))
    return 0
