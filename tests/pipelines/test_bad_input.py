"""Bad input through the whole ingest: each case ends where it should, and every batch balances.

One shop's own header-less export (milliseconds) over two landing days, with the dirt a real
export brings: event types the source does not map, timestamps that cannot be read or lie
outside the shop's life, a repeated row, a file with a column too few, and a file whose
header two of the shop's sources match.
"""

from __future__ import annotations

from dagster import DagsterInstance

from data_contracts import adapters, warehouse
from pipelines.cli import main
from pipelines.commands.ingest import ingest_landed

CLICKS = """\
name: clicks
read:
  format: csv
  header: false
  columns: [user, item, category, behaviour, unix_ms]
events:
  fields: {ts: unix_ms, user_id: user, item_id: item, event_type: behaviour}
  constants: {source: clickstream}
  timestamp: {unit: ms}
  event_types: {pv: view, cart: add_to_cart, buy: purchase}
catalog:
  fields: {category: category}
  constants: {price: 0.0}
"""
# The same export with its header line, claimed by two of the shop's sources.
WITH_HEADER = CLICKS.replace("  format: csv\n  header: false\n", "")
DAY_ONE = (
    "1001,i1,c1,pv,1767600000000\n"
    "1001,i2,c1,cart,1767600060000\n"
    "1002,i1,c1,like,1767600120000\n"  # not in the vocabulary
    "1002,i3,c2,buy,1767600180\n"  # seconds in a milliseconds column: 1970
    "1003,i3,c2,pv,99999999999999999999999\n"  # beyond any timestamp
    "1003,i4,c2,pv,later\n"  # no number at all
    "1003,i4,c2,pv,4102444800000\n"  # 2100
    "1001,i1,c1,pv,1767600000000\n"  # row 1 again
)
DAY_TWO = "1004,i1,c1,pv,1767690000000\n1004,i2,c1,buy,1767690060000\n"


def landed(settings, day: str, name: str, text: str, source: str | None = "clicks"):
    path = settings.events_landing / day / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if source:
        adapters.write_note(path, adapters.Sources.load(settings.sources_landing).get(source))
    return path


def test_bad_rows_and_files_end_where_they_should_and_every_batch_balances(settings):
    settings.sources_landing.mkdir(parents=True)
    (settings.sources_landing / "clicks.yaml").write_text(CLICKS)
    for name in ("shop_a", "shop_b"):
        (settings.sources_landing / f"{name}.yaml").write_text(
            WITH_HEADER.replace("name: clicks", f"name: {name}")
        )
    landed(settings, "2026-01-05", "clicks.csv", DAY_ONE)
    landed(settings, "2026-01-05", "short.csv", "1001,i1,pv,1767600000000\n")
    landed(settings, "2026-01-06", "clicks.csv", DAY_TWO)
    landed(
        settings, "2026-01-06", "both.csv", "user,item,category,behaviour,unix_ms\n" + DAY_TWO, source=None
    )

    [run_id] = ingest_landed(settings, instance=DagsterInstance.ephemeral())

    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    rejected = dict(conn.execute("SELECT file, reason FROM rejected_files").fetchall())
    quarantined = conn.execute(
        "SELECT batch_date::VARCHAR, source_row, rule FROM quarantine_events ORDER BY ALL"
    ).fetchall()
    clean = conn.execute(
        "SELECT batch_date::VARCHAR, user_id, event_type FROM events ORDER BY ALL"
    ).fetchall()
    runs = conn.execute(
        "SELECT batch_date::VARCHAR, rows_in, rows_clean, rows_quarantined, rows_duplicate FROM ingest_runs"
        " WHERE run_id = ? ORDER BY 1",
        [run_id],
    ).fetchall()
    stored = {
        table: dict(conn.execute(f"SELECT batch_date::VARCHAR, count(*) FROM {table} GROUP BY 1").fetchall())
        for table in ("raw_events", "events", "quarantine_events")
    }
    conn.close()

    # Files that cannot be read are moved aside with their reason; nothing of them is ingested.
    reasons = {file.rsplit("/", 1)[-1]: reason for file, reason in rejected.items()}
    assert reasons.keys() == {"short.csv", "both.csv"}
    assert "the first line has 4 fields, the source names 5" in reasons["short.csv"]
    assert "matches several sources (shop_a, shop_b)" in reasons["both.csv"]
    assert not (settings.events_landing / "2026-01-06" / "both.csv").exists()
    # Rows that break a rule are quarantined with it, never dropped or guessed.
    assert quarantined == [
        ("2026-01-05", 3, "unknown_event_type"),
        ("2026-01-05", 4, "ts_out_of_range"),
        ("2026-01-05", 5, "rejected_by_reader"),
        ("2026-01-05", 6, "rejected_by_reader"),
        ("2026-01-05", 7, "future_ts"),
    ]
    assert clean == [
        ("2026-01-05", "1001", "add_to_cart"),
        ("2026-01-05", "1001", "view"),
        ("2026-01-06", "1004", "purchase"),
        ("2026-01-06", "1004", "view"),
    ]
    # Every batch: rows_in = clean + quarantined + duplicates, and each figure is what is stored.
    assert runs == [("2026-01-05", 8, 2, 5, 1), ("2026-01-06", 2, 2, 0, 0)]
    for day, rows_in, rows_clean, rows_quarantined, rows_duplicate in runs:
        assert rows_in == rows_clean + rows_quarantined + rows_duplicate
        assert rows_in == stored["raw_events"][day]
        assert rows_clean == stored["events"][day]
        assert rows_quarantined == stored["quarantine_events"].get(day, 0)


def test_land_refuses_a_file_two_sources_match_in_one_line_until_one_is_named(settings, tmp_path, capsys):
    settings.sources_landing.mkdir(parents=True)
    for name in ("shop_a", "shop_b"):
        (settings.sources_landing / f"{name}.yaml").write_text(
            WITH_HEADER.replace("name: clicks", f"name: {name}")
        )
    export = tmp_path / "both.csv"
    export.write_text("user,item,category,behaviour,unix_ms\n" + DAY_TWO)
    assert main(["land", str(export), "--date", "2026-01-06"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "both.csv: matches several sources (shop_a, shop_b)" in line
    assert not (settings.events_landing / "2026-01-06").exists()
    assert main(["land", str(export), "--date", "2026-01-06", "--source", "shop_b"]) == 0
    note = settings.events_landing / "2026-01-06" / "both.csv.source"
    assert note.read_text().strip() == "shop_b"
    assert DagsterInstance.get().get_dynamic_partitions("landing_days") == ["2026-01-06"]
