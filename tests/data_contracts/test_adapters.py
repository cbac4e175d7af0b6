from __future__ import annotations

from datetime import datetime, timezone

import polars as pl
import pytest
from testdata import SAMPLES, dataset

from data_contracts import adapters, schemas

HEADER = "event_id,ts,user_id,item_id,event_type,session_id,quantity,price,source"


def write(tmp_path, name: str, text: str, encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_canonical_csv_keeps_malformed_and_truncated_lines_with_a_reason(tmp_path):
    path = write(
        tmp_path,
        "events.csv",
        f"{HEADER}\n"
        "e1,2026-01-01T10:00:00Z,u1,i1,view,s1,,,web\n"
        "only,three,fields\n"
        "e2,2026-01-01 10:01:00,u1,i2,add_to_cart,s1,1,9.5,web,surplus\n"
        "e3,yesterday,u1,i2,purchase,s1,1,abc,web\n"
        "e4,2026-01-01T10:03:00Z,u2,i",
    )
    adapted = adapters.adapt_file(path)
    events = adapted.events.sort("source_row")
    assert adapted.format == "canonical"
    assert events.height == 5  # nothing lost
    assert events.columns == list(schemas.RAW_EVENT_SCHEMA)
    reasons = dict(zip(events["source_row"], events["reject_reason"], strict=True))
    assert reasons[1] is None
    assert reasons[2].startswith("malformed_line: missing columns")
    assert reasons[3].startswith("malformed_line: too many columns")
    assert reasons[4] == "unparseable: ts,price"
    assert reasons[5].startswith("malformed_line")
    first = events.row(0, named=True)
    assert first["ts"] == datetime(2026, 1, 1, 10, tzinfo=timezone.utc)
    assert events.filter(pl.col("source_row") == 2)["raw_line"][0] == "only,three,fields"


def test_canonical_file_without_event_ids_gets_stable_content_hashes(tmp_path):
    text = "ts,user_id,item_id,event_type\n2026-01-01T10:00:00Z,u1,i1,view\n2026-01-01T10:00:01Z,u1,i2,view\n"
    first = adapters.adapt_file(write(tmp_path, "a.csv", text)).events["event_id"].to_list()
    again = adapters.adapt_file(write(tmp_path, "b.csv", text)).events["event_id"].to_list()
    assert first == again
    assert len(set(first)) == 2 and all(i.startswith("ev-") for i in first)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ts,user_id,event_type\n2026-01-01,u1,view\n", "missing required columns ['item_id']"),
        (f"{HEADER},colour\ne1,2026-01-01,u1,i1,view,s,1,1.0,web,red\n", "unexpected columns ['colour']"),
        ("foo,bar\n1,2\n", "match no known format"),
    ],
)
def test_a_file_with_wrong_columns_fails_naming_file_and_problem(tmp_path, text, message):
    path = write(tmp_path, "feed.csv", text)
    with pytest.raises(adapters.LandingFileError, match="feed.csv") as error:
        adapters.adapt_file(path)
    assert message in str(error.value)


def test_an_empty_file_fails_naming_the_file(tmp_path):
    path = write(tmp_path, "empty.csv", "")
    with pytest.raises(adapters.LandingFileError, match=r"empty.csv: file is empty"):
        adapters.adapt_file(path)


def test_a_wrongly_encoded_line_is_kept_with_its_reason(tmp_path):
    # A Latin-1 byte in a file read as UTF-8: that line is rejected whole, the others pass.
    path = write(
        tmp_path,
        "latin1.csv",
        f"{HEADER}\ne1,2026-01-01T10:00:00Z,u1,caf\xe9,view,s,,,web\ne2,2026-01-01T10:00:00Z,u1,tea,view,s,,,web\n",
        "latin-1",
    )
    events = adapters.adapt_file(path).events.sort("source_row")
    assert events.height == 2
    assert events["reject_reason"][0].startswith("malformed_line: invalid encoding")
    assert events["raw_line"][0].startswith("e1,2026-01-01T10:00:00Z,u1,caf")
    assert events.row(1, named=True)["item_id"] == "tea" and events["reject_reason"][1] is None


def test_jsonl_keeps_broken_lines(tmp_path):
    path = write(
        tmp_path,
        "events.jsonl",
        '{"event_id":"e1","ts":"2026-01-01T10:00:00Z","user_id":"u1","item_id":"i1","event_type":"view"}\n'
        '{"event_id":"e2","ts":\n'
        '["not", "an", "object"]\n',
    )
    events = adapters.adapt_file(path).events.sort("source_row")
    assert events["reject_reason"].to_list()[0] is None
    assert all(r.startswith("malformed_line") for r in events["reject_reason"].to_list()[1:])
    assert events["raw_line"][1] == '{"event_id":"e2","ts":'


def test_a_corrupt_parquet_file_fails_naming_the_file(tmp_path):
    path = write(tmp_path, "broken.parquet", "PAR1 this is not parquet")
    with pytest.raises(adapters.LandingFileError, match="broken.parquet: not a readable Parquet file"):
        adapters.adapt_file(path)


def test_online_retail_sample_turns_cancellations_into_refunds_and_fees_into_non_items():
    adapted = adapters.adapt_file(SAMPLES / "online_retail_ii_sample.parquet")
    events = adapted.events
    assert adapted.format == "online_retail"
    refunds = events.filter(pl.col("event_type") == "refund")
    assert refunds.height > 0 and (refunds["quantity"] > 0).all()
    assert refunds["session_id"].str.starts_with("C").all()
    fees = events.filter(pl.col("item_id").is_in(["POST", "DOT", "M", "BANK CHARGES", "AMAZONFEE"]))
    assert fees.height > 0 and fees["reject_reason"].str.starts_with("not_an_item").all()
    # Customer ID is stored as a float in the source; user ids are plain integers as text.
    assert events["user_id"].drop_nulls().str.contains(r"^\d+$").all()
    # Local London time in winter equals UTC; in summer it is one hour ahead.
    first = events.filter(pl.col("source_row") == 1).row(0, named=True)
    assert first["ts"] == datetime(2009, 12, 1, 7, 45, tzinfo=timezone.utc)
    catalog = adapted.catalog
    assert catalog.height > 0 and (catalog["price"] > 0).all()
    assert not catalog["item_id"].is_in(["POST", "M"]).any()


def test_rees46_sample_maps_event_types_and_keeps_the_cut_off_line():
    adapted = adapters.adapt_file(SAMPLES / "rees46_2019oct_sample.csv")
    events = adapted.events
    assert adapted.format == "rees46"
    assert set(events["event_type"].drop_nulls()) <= {"view", "add_to_cart", "purchase"}
    last = events.sort("source_row").row(-1, named=True)
    assert last["reject_reason"].startswith("malformed_line")
    assert last["raw_line"].startswith("2019-10-01 02:50:00 UTC,view,10900305")
    assert adapted.catalog["category"].drop_nulls().str.contains(" > ").all()


def test_sasrec_file_keeps_each_users_order(tmp_path):
    path = write(tmp_path, "seq.txt", "1 10\n1 11\n2 10\n1 12\n")
    events = adapters.adapt_file(path).events
    user1 = events.filter(pl.col("user_id") == "1").sort("ts")
    assert user1["item_id"].to_list() == ["10", "11", "12"]
    assert adapters.adapt_file(path).catalog["item_id"].sort().to_list() == ["10", "11", "12"]


def test_real_online_retail_file_loses_no_row():
    path = dataset("online-retail-ii-2009-2010/online_retail_ii_2009_2010.parquet")
    adapted = adapters.adapt_file(path)
    assert adapted.events.height == 525_461
    refunds = adapted.events.filter(pl.col("event_type") == "refund").height
    assert 9_000 < refunds < 12_000
    assert adapted.catalog["item_id"].n_unique() > 4_000


def test_real_rees46_head_loses_no_row():
    path = dataset("rees46-2019oct-head/events_head.csv")
    events = adapters.adapt_file(path).events
    assert events.height == 17_435  # 17,434 whole rows and the cut-off one
    assert events["reject_reason"].is_not_null().sum() == 1  # the cut-off last line


def test_real_sasrec_file_reads_every_line():
    path = dataset("ml-1m/ml-1m-sasrec-prefix.txt")
    events = adapters.adapt_file(path).events
    assert events.height == 987_531
    assert events["user_id"].n_unique() == 6_040
