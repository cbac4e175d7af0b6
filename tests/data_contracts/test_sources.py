"""Source files: validation, the mapping engine on shops' own exports, and bad input."""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatch
from pathlib import Path

import polars as pl
import pytest
from testdata import REPO, SAMPLES

from data_contracts import adapters, rules
from data_contracts.adapters import registry

NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)

CLICKS = """\
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
"""


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def sources_with(folder: Path, **files: str) -> adapters.Sources:
    for name, text in files.items():
        write(folder / "sources", f"{name}.yaml", text)
    return adapters.Sources.load(folder / "sources")


def contract(events: pl.DataFrame) -> rules.Split:
    return rules.apply_rules(events, rules.event_rules(NOW, timedelta(minutes=10), None))


def by_row(split: rules.Split) -> dict[int, str | None]:
    rows = {r: None for r in split.clean["source_row"]}
    rows.update(dict(zip(split.quarantined["source_row"], split.quarantined["rule"], strict=True)))
    return rows


def test_every_shipped_source_loads_and_is_package_data():
    names = {s.name for s in adapters.shipped_sources()}
    assert names == {
        "canonical",
        "canonical_catalog",
        "online_retail",
        "online_retail_uci",
        "rees46",
        "sasrec",
    }
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for path in registry.SHIPPED_DIR.glob("*.yaml"):
        relative = path.relative_to(REPO / "data_contracts").as_posix()
        assert any(fnmatch(relative, p) for p in patterns["data_contracts"]), relative


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nread: [unclosed\n", r"x.yaml: not valid YAML at line 3 \(expected ','"),
        (
            "name: x\nread: {columns: [a], delimter: ';'}\nevents: {}\n",
            r"x.yaml: read.delimter: Extra inputs",
        ),
        (
            "name: x\nread: {columns: [a, b]}\nevents: {fields: {ts: a, user_id: b, item_id: c, event_type: a}}\n",
            r"x.yaml: events.fields.item_id: column 'c' is not in read.columns \['a', 'b'\]",
        ),
        (
            "name: x\nread: {columns: [a]}\nevents: {fields: {ts: a, user_id: a, item_id: a, event_type: a},"
            " event_types: {fav: wishlist}}\n",
            r"x.yaml: events.event_types: fav: 'wishlist' is not a canonical event type",
        ),
        (
            "name: x\nread: {columns: [a]}\nevents: {fields: {ts: a}}\n",
            r"x.yaml: events: fields: no column or constant for \['user_id', 'item_id', 'event_type'\]",
        ),
        (
            "name: x\nread: {columns: [a]}\nevents: {fields: {ts: a, user_id: a, item_id: a, event_type: a},"
            " timestamp: {zone: Mars/Olympus}}\n",
            r"x.yaml: events.timestamp.zone: unknown time zone 'Mars/Olympus'",
        ),
        (
            "name: rees46\nread: {columns: [a]}\ncatalog: {fields: {item_id: a}}\n",
            r"'rees46' is already a shipped",
        ),
    ],
)
def test_a_bad_source_file_names_the_file_the_key_and_the_problem(tmp_path, text, message):
    write(tmp_path / "sources", "x.yaml", text)
    with pytest.raises(adapters.SourceError, match=message):
        adapters.Sources.load(tmp_path / "sources")


def test_a_header_less_clickstream_maps_its_vocabulary_and_quarantines_the_rest(tmp_path):
    sources = sources_with(tmp_path, clicks=CLICKS)
    path = write(
        tmp_path,
        "export.csv",
        "1001,i1,c1,pv,1700000000\n"
        "1001,i2,c1,cart,1700000060\n"
        "1002,i1,c1,fav,1700000120\n"  # mapped to null: quarantined
        "1002,i3,c2,buy,1700000180\n"
        "1003,i3,c2,like,1700000240\n"  # not in the vocabulary: quarantined, never guessed
        "1003,i4,c2,pv,99999999999999999\n"  # beyond any datetime
        "1003,i4,c2,pv,1700000\n"  # 1970: a wrong unit
        "1003,i4,c2,pv,soon\n",
    )
    adapted = adapters.adapt_file(path, sources, sources.get("clicks"))
    events = adapted.events.sort("source_row")
    assert adapted.format == "clicks" and events.height == 8
    assert events["event_type"].to_list()[:5] == ["view", "add_to_cart", "fav", "purchase", "like"]
    assert events["ts"][0] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=timezone.utc)
    assert events["source"].unique().to_list() == ["clickstream"]
    rows = by_row(contract(events))
    assert rows == {
        1: None,
        2: None,
        3: "unknown_event_type",
        4: None,
        5: "unknown_event_type",
        6: "rejected_by_reader",
        7: "ts_out_of_range",
        8: "rejected_by_reader",
    }
    assert events["reject_reason"][5] == events["reject_reason"][7] == "unparseable: unix_time"


def test_a_header_less_file_with_another_column_count_is_refused(tmp_path):
    sources = sources_with(tmp_path, clicks=CLICKS)
    path = write(tmp_path, "export.csv", "1001,i1,pv,1700000000\n")
    with pytest.raises(
        adapters.LandingFileError, match=r"export.csv: the first line has 4 fields, the source names 5"
    ):
        adapters.adapt_file(path, sources, sources.get("clicks"))


def test_a_source_naming_a_column_the_file_lacks_is_refused(tmp_path):
    source = CLICKS.replace("format: csv\n  header: false\n", "")
    sources = sources_with(tmp_path, clicks=source)
    path = write(tmp_path, "export.csv", "user,item,category,behaviour\n1001,i1,c1,pv\n")
    with pytest.raises(
        adapters.LandingFileError, match=r"missing required columns \['unix_time'\] \(source clicks\)"
    ):
        adapters.adapt_file(path, sources, sources.get("clicks"))
    # Detection says the same: the closest source names what is missing.
    with pytest.raises(adapters.LandingFileError, match=r"missing required columns \['unix_time'\]"):
        sources.detect(path)


def test_a_file_matching_two_sources_is_an_error_until_one_is_named(tmp_path):
    renamed = CLICKS.replace("name: clicks", "name: clicks_copy")
    header = CLICKS.replace("format: csv\n  header: false\n", "")
    sources = sources_with(
        tmp_path, clicks=header, clicks_copy=renamed.replace("format: csv\n  header: false\n", "")
    )
    path = write(tmp_path, "export.csv", "user,item,category,behaviour,unix_time\n1001,i1,c1,pv,1700000000\n")
    with pytest.raises(
        adapters.LandingFileError, match=r"export.csv: matches several sources \(clicks, clicks_copy\)"
    ):
        sources.detect(path)
    adapters.write_note(path, sources.get("clicks_copy"))
    assert adapters.adapt_file(path, sources).format == "clicks_copy"


def test_the_original_uci_naming_maps_like_online_retail_ii(tmp_path):
    ii = pl.read_parquet(SAMPLES / "online_retail_ii_sample.parquet")
    uci = ii.rename({"Invoice": "InvoiceNo", "Price": "UnitPrice", "Customer ID": "CustomerID"}).with_columns(
        # As the UCI spreadsheet exports it: 12/1/2010 8:26 style dates, ids without ".0".
        pl.col("InvoiceDate").str.to_datetime().dt.strftime("%m/%d/%Y %H:%M"),
        pl.col("CustomerID").cast(pl.Int64),
    )
    path = tmp_path / "Online Retail.csv"
    uci.write_csv(path)
    old, new = adapters.adapt_file(SAMPLES / "online_retail_ii_sample.parquet"), adapters.adapt_file(path)
    assert new.format == "online_retail_uci"
    same = [
        "ts",
        "user_id",
        "item_id",
        "event_type",
        "session_id",
        "quantity",
        "price",
        "source",
        "reject_reason",
    ]
    assert new.events.sort("source_row").select(same).equals(old.events.sort("source_row").select(same))
    assert new.catalog.drop("source_file").equals(old.catalog.drop("source_file"))


def test_a_jsonl_line_with_a_lone_surrogate_is_quarantined_alone(tmp_path):
    good = '{"ts":"2026-01-01T10:00:00Z","user_id":"u1","item_id":"i1","event_type":"view"}'
    bad = '{"ts":"2026-01-01T10:00:01Z","user_id":"u\\ud800","item_id":"i1","event_type":"view"}'
    path = write(tmp_path, "events.jsonl", f"{good}\n{bad}\n{good.replace('i1', 'i2')}\n")
    events = adapters.adapt_file(path).events.sort("source_row")
    assert events.height == 3
    assert events["reject_reason"][1] == "malformed_line: a \\u escape is a lone surrogate, not a character"
    assert events["raw_line"][1] == bad
    assert events["reject_reason"].null_count() == 2
    events.write_parquet(tmp_path / "out.parquet")  # the whole frame is storable text
    split = contract(events)
    assert split.clean.height + split.quarantined.height == 3


def test_latin1_rows_keep_their_bytes_in_raw_line_and_a_latin1_source_reads_them(tmp_path):
    text = "ts,user_id,item_id,event_type\n2026-01-01T10:00:00Z,u1,caf\xe9,view\n2026-01-01T10:00:00Z,u1,tea,view\n"
    path = write(tmp_path, "latin1.csv", text.encode("latin-1"))
    events = adapters.adapt_file(path).events.sort("source_row")
    assert events["reject_reason"][0].startswith("malformed_line: invalid encoding")
    assert events["raw_line"][0] == "2026-01-01T10:00:00Z,u1,caf\\xe9,view"
    latin1 = (
        (registry.SHIPPED_DIR / "canonical.yaml")
        .read_text()
        .replace("name: canonical\n", "name: latin1_events\n")
        .replace("  extra_columns: refuse\n", "  extra_columns: refuse\n  encoding: latin-1\n")
    )
    sources = sources_with(tmp_path, latin1_events=latin1)
    events = adapters.adapt_file(path, sources, sources.get("latin1_events")).events.sort("source_row")
    assert events["item_id"].to_list() == ["café", "tea"] and events["reject_reason"].null_count() == 2


def test_a_binary_file_named_parquet_is_refused_naming_the_file(tmp_path):
    path = write(tmp_path, "export.parquet", b"\x00\x01\x02 not parquet at all \xff")
    with pytest.raises(adapters.LandingFileError, match=r"export.parquet: not a readable Parquet file"):
        adapters.Sources.load().detect(path)
    with pytest.raises(adapters.LandingFileError, match=r"export.parquet: not a readable Parquet file"):
        adapters.adapt_file(path)


def test_text_timestamps_in_a_declared_format_and_zone(tmp_path):
    source = """\
name: invoices
read: {columns: [order_no, sku, qty, when, customer]}
events:
  fields: {ts: when, user_id: customer, item_id: sku, session_id: order_no, quantity: qty}
  constants: {event_type: purchase}
  timestamp: {format: "%d/%m/%Y %H:%M", zone: Europe/Paris}
"""
    sources = sources_with(tmp_path, invoices=source)
    path = write(
        tmp_path,
        "orders.csv",
        "order_no,sku,qty,when,customer\nA1,s1,2,15/07/2026 10:30,c1\nA2,s2,1,31/02/2026 10:30,c1\nA3,s3,x,,c2\n",
    )
    events = adapters.adapt_file(path, sources).events.sort("source_row")
    assert events["ts"][0] == datetime(2026, 7, 15, 8, 30, tzinfo=timezone.utc)  # CEST is UTC+2
    assert events["reject_reason"].to_list() == [None, "unparseable: when", "unparseable: qty"]
    assert by_row(contract(events)) == {1: "future_ts", 2: "rejected_by_reader", 3: "rejected_by_reader"}


def test_a_jsonl_file_whose_first_line_is_broken_is_still_recognised(tmp_path):
    good = '{"ts":"2026-01-01T10:00:00Z","user_id":"u1","item_id":"i1","event_type":"view"}'
    path = write(tmp_path, "events.jsonl", '{"ts":"2026-01-01T10:0\n' + good + "\n")
    adapted = adapters.adapt_file(path)
    assert adapted.format == "canonical"
    assert adapted.events.sort("source_row")["reject_reason"][0].startswith("malformed_line")
    with pytest.raises(adapters.LandingFileError, match=r"none of the first 100 lines is a JSON object"):
        adapters.adapt_file(write(tmp_path, "junk.jsonl", "not json\n[1, 2]\n"))
