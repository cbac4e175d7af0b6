"""Evaluation reports: a PNG plot and a JSON of metrics per model, in the reports folder and
as Dagster metadata (the plot inline)."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

from dagster import MetadataValue


def write_report(folder: Path, name: str, metrics: dict, plot_png: bytes) -> dict[str, Path]:
    """Write ``<name>.json`` (appended to ``<name>-history.jsonl``) and ``<name>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {"at": datetime.now(timezone.utc).isoformat(), **metrics}
    paths = {
        "json": folder / f"{name}.json",
        "png": folder / f"{name}.png",
        "history": folder / f"{name}-history.jsonl",
    }
    paths["json"].write_text(json.dumps(record, indent=2, default=str))
    with open(paths["history"], "a") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
    paths["png"].write_bytes(plot_png)
    return paths


def plot_metadata(plot_png: bytes) -> MetadataValue:
    """The plot inline in the asset's page of the Dagster UI."""
    return MetadataValue.md(f"![plot](data:image/png;base64,{base64.b64encode(plot_png).decode()})")
