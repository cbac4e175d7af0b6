"""The README's own export example: its source files load, and its clickstream lands and ingests."""

from __future__ import annotations

import re

from dagster import DagsterInstance
from testdata import REPO

from data_contracts import adapters, warehouse
from pipelines.cli import main
from pipelines.commands.ingest import ingest_landed


def readme_example() -> tuple[str, list[str]]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Bring your own export") :]
    section = section[: section.index("\n## ")]
    [data] = re.findall(r"```csv\n(.*?)```", section, flags=re.S)
    return data, re.findall(r"```yaml\n(.*?)```", section, flags=re.S)


def test_the_readme_clickstream_and_invoice_sources_work_as_shown(settings, tmp_path, capsys):
    data, sources = readme_example()
    assert len(sources) == 2
    settings.sources_landing.mkdir(parents=True)
    for text in sources:
        name = re.search(r"^name: (\w+)", text, flags=re.M).group(1)
        (settings.sources_landing / f"{name}.yaml").write_text(text)
    loaded = adapters.Sources.load(settings.sources_landing)
    assert {"clicks", "shop_invoices"} <= {s.name for s in loaded.all}
    export = tmp_path / "clicks.csv"
    export.write_text(data)
    assert main(["sources", "check", str(export), "--source", "clicks"]) == 0
    out = capsys.readouterr().out
    assert "4 sampled rows → 3 clean, 1 quarantined" in out and "unknown_event_type 1" in out
    assert main(["land", str(export), "--source", "clicks", "--date", "2026-01-05"]) == 0
    ingest_landed(settings, instance=DagsterInstance.ephemeral())
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    counts = conn.execute(
        "SELECT rows_in, rows_clean, rows_quarantined, rows_duplicate FROM ingest_runs"
    ).fetchone()
    conn.close()
    assert counts == (4, 3, 1, 0)
