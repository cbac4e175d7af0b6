"""shopml land and shopml sources: a shop's own export, checked at landing, then ingested."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance
from testdata import SAMPLES

from data_contracts import adapters, warehouse
from pipelines.cli import main
from pipelines.commands.ingest import ingest_landed
from pipelines.commands.land import land_file
from pipelines.commands.sources import suggest

CLICKS_SOURCE = """\
name: clicks
read:
  format: csv
  header: false
  columns: [user, item, category, behaviour, unix_time]
events:
  fields: {ts: unix_time, user_id: user, item_id: item, event_type: behaviour}
  constants: {source: clickstream}
  timestamp: {unit: s}
  event_types: {pv: view, cart: add_to_cart, buy: purchase, fav: null}
catalog:
  fields: {category: category}
  constants: {price: 0.0}
"""
CLICKS = (
    "1001,i1,c1,pv,1767600000\n"
    "1001,i2,c1,cart,1767600060\n"
    "1002,i1,c1,fav,1767600120\n"
    "1002,i3,c2,buy,1767600180\n"
    "1003,i3,c2,pv,1767600240\n"
)


def one_line(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_a_header_less_clickstream_lands_with_its_source_and_ingests(settings, tmp_path, capsys):
    (settings.sources_landing).mkdir(parents=True)
    (settings.sources_landing / "clicks.yaml").write_text(CLICKS_SOURCE)
    export = tmp_path / "clicks-2026-01-05.csv"
    export.write_text(CLICKS)
    # Without a source, the first data row is no header of any known format.
    assert main(["land", str(export)]) == 2
    assert "match no known format" in one_line(capsys)[0]
    assert main(["land", str(export), "--source", "clicks", "--date", "2026-01-05"]) == 0
    landed = settings.events_landing / "2026-01-05" / export.name
    assert (landed.parent / f"{export.name}.source").read_text().strip() == "clicks"
    # Landed again under that name as a file its header identifies, the old note goes.
    (settings.sources_landing / "clicks_header.yaml").write_text(
        CLICKS_SOURCE.replace("name: clicks", "name: clicks_header").replace(
            "  format: csv\n  header: false\n", ""
        )
    )
    header = tmp_path / "header" / export.name
    header.parent.mkdir()
    header.write_text("user,item,category,behaviour,unix_time\n" + CLICKS)
    land_file(settings, header, "2026-01-05")
    assert not (landed.parent / f"{export.name}.source").exists()
    land_file(settings, export, "2026-01-05", source="clicks")  # back to the header-less export
    instance = DagsterInstance.ephemeral()
    [run_id] = ingest_landed(settings, instance=instance)
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    events = conn.execute("SELECT event_type, count(*) FROM events GROUP BY 1 ORDER BY 1").fetchall()
    quarantined = conn.execute("SELECT event_type, rule FROM quarantine_events").fetchall()
    balance = conn.execute(
        "SELECT rows_in, rows_clean, rows_quarantined, rows_duplicate FROM ingest_runs"
    ).fetchone()
    conn.close()
    assert events == [("add_to_cart", 1), ("purchase", 1), ("view", 2)]
    assert quarantined == [("fav", "unknown_event_type")]
    assert balance == (5, 4, 1, 0)


def test_land_refuses_a_header_that_only_looks_canonical(settings, tmp_path, capsys):
    # A clickstream whose header has a user_id column is not a canonical file.
    path = tmp_path / "clicks.csv"
    path.write_text("user_id,item_id,category,behaviour,time\n1001,i1,c1,pv,1767600000\n")
    assert main(["land", str(path)]) == 2
    [line] = one_line(capsys)
    assert (
        line.startswith("shopml land: error: ")
        and "clicks.csv: missing required columns ['ts', 'event_type']" in line
    )
    assert not settings.landing_dir.exists()


def test_land_refuses_what_ingest_would_quarantine_whole_unless_forced(settings, tmp_path, capsys):
    path = tmp_path / "events.csv"
    path.write_text("ts,user_id,item_id,event_type\n20260105,u1,i1,view\n20260105,u2,i1,view\n")
    assert main(["land", str(path), "--date", "2026-01-05"]) == 2
    [line] = one_line(capsys)
    assert "none of the 2 sampled rows would be clean with source canonical (rejected_by_reader 2)" in line
    assert main(["land", str(path), "--date", "2026-01-05", "--force"]) == 0
    assert (settings.events_landing / "2026-01-05" / "events.csv").exists()


def test_land_refuses_a_binary_parquet_file_naming_it(settings, tmp_path, capsys):
    path = tmp_path / "export.parquet"
    path.write_bytes(b"\x00\x01\x02\x03 binary")
    assert main(["land", str(path)]) == 2
    [line] = one_line(capsys)
    assert "export.parquet: not a readable Parquet file" in line


def test_sources_check_prints_clean_and_quarantined_by_rule(settings, tmp_path, capsys):
    settings.sources_landing.mkdir(parents=True)
    (settings.sources_landing / "clicks.yaml").write_text(CLICKS_SOURCE)
    path = tmp_path / "clicks.csv"
    path.write_text(CLICKS + "1003,i4,c2,like,1767600300\n1003,i4,c2,pv,later\n")
    assert main(["sources", "check", str(path), "--source", "clicks"]) == 0
    out = capsys.readouterr().out
    assert "7 sampled rows → 4 clean, 3 quarantined, 0 duplicates" in out
    assert "quarantined by rule: unknown_event_type 2, rejected_by_reader 1" in out
    assert "event types the source does not map: 'fav' 1, 'like' 1" in out


def test_a_suggested_source_reads_the_file_it_was_made_from(settings, tmp_path):
    path = tmp_path / "clicks.csv"
    path.write_text(CLICKS)
    text = suggest(path)
    assert "header: false" in text and "unit: s" in text and "fav: null" in text
    settings.sources_landing.mkdir(parents=True)
    (settings.sources_landing / "clicks.yaml").write_text(text)
    sources = adapters.Sources.load(settings.sources_landing)
    events = adapters.adapt_file(path, sources, sources.get("clicks")).events.sort("source_row")
    assert events["event_type"].to_list() == ["view", "add_to_cart", "fav", "purchase", "view"]
    assert events["user_id"].to_list()[:2] == ["1001", "1001"] and events["item_id"][1] == "i2"
    assert events["reject_reason"].null_count() == 5


def test_a_renamed_invoice_export_lands_with_a_users_source(settings, tmp_path):
    source = """\
name: shop_invoices
read: {columns: [order, sku, name, units, ordered_at, unit_price, customer]}
events:
  fields:
    ts: ordered_at
    user_id: customer
    item_id: sku
    session_id: order
    quantity: units
    price: unit_price
  constants: {event_type: purchase, source: shop_invoices}
  timestamp: {format: "%d.%m.%Y %H:%M", zone: Europe/Berlin}
  cancellation: {column: order, prefix: R, event_type: refund}
  item_codes: {pattern: '^SKU-\\d+$', reason: shipping or fee line}
catalog:
  fields: {title: name, price: unit_price}
  constants: {currency: EUR}
  positive_price_only: true
"""
    settings.sources_landing.mkdir(parents=True)
    (settings.sources_landing / "shop_invoices.yaml").write_text(source)
    export = tmp_path / "invoices.csv"
    export.write_text(
        "order,sku,name,units,ordered_at,unit_price,customer\n"
        "1001,SKU-1,Mug,2,05.01.2026 09:15,7.50,c1\n"
        "1001,SHIP,Shipping,1,05.01.2026 09:15,4.90,c1\n"
        "R1001,SKU-1,Mug,-1,05.01.2026 18:00,7.50,c1\n"
    )
    land_file(settings, export, "2026-01-05")  # picked from its header
    ingest_landed(settings, instance=DagsterInstance.ephemeral())
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    events = conn.execute("SELECT event_type, quantity, item_id FROM events ORDER BY ts").fetchall()
    rules = conn.execute("SELECT rule FROM quarantine_events").fetchall()
    catalog = conn.execute("SELECT item_id, title, price, currency FROM catalog").fetchall()
    conn.close()
    assert events == [("purchase", 2, "SKU-1"), ("refund", 1, "SKU-1")]
    assert rules == [("rejected_by_reader;unknown_item",)]  # not_an_item: shipping or fee line SHIP
    assert catalog == [("SKU-1", "Mug", 7.5, "EUR")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["land", "nowhere.csv"], "nowhere.csv: file does not exist"),
        (["land", str(SAMPLES / "rees46_2019oct_sample.csv"), "--source", "nope"], "no source named 'nope'"),
        (["land", str(SAMPLES / "rees46_2019oct_sample.csv"), "--date", "yesterday"], "--date 'yesterday'"),
        (["sources", "check", "nowhere.csv"], "nowhere.csv: file does not exist"),
        (["ingest", "--batch", "2026-13-01"], "--batch '2026-13-01': not a day"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(settings, capsys, argv, message):
    assert main(argv) == 2
    [line] = one_line(capsys)
    assert line.startswith(f"shopml {argv[0]}: error: ") and message in line


def test_a_broken_source_file_stops_ingest_in_one_line_and_debug_shows_the_traceback(
    settings, tiny_shop, capsys
):
    settings.sources_landing.mkdir(parents=True)
    (settings.sources_landing / "mine.yaml").write_text("name: mine\nread: {columns: [a]}\n")
    assert main(["ingest"]) == 2
    lines = one_line(capsys)
    assert len(lines) <= 2 and "mine.yaml: a source needs an events section" in lines[0]
    with pytest.raises(Exception, match="mine.yaml"):
        main(["ingest", "--debug"])
