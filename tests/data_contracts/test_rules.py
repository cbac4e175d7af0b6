from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl

from data_contracts import rules, schemas

NOW = datetime(2026, 1, 10, tzinfo=timezone.utc)


def raw(**overrides) -> dict:
    row = {
        "event_id": "e",
        "ts": datetime(2026, 1, 9, tzinfo=timezone.utc),
        "user_id": "u1",
        "item_id": "i1",
        "event_type": "view",
        "session_id": None,
        "quantity": None,
        "price": None,
        "source": "test",
        "source_file": "f",
        "source_row": 1,
        "raw_line": None,
        "reject_reason": None,
    }
    return {**row, **overrides}


def test_every_event_rule_catches_its_case_and_records_its_name():
    cases = {
        None: raw(event_id="ok"),
        "missing_event_id": raw(event_id=""),
        "missing_ts": raw(ts=None),
        "future_ts": raw(ts=NOW + timedelta(hours=1)),
        "missing_user": raw(user_id=None),
        "missing_item": raw(item_id="  "),
        "unknown_event_type": raw(event_type="clicked"),
        "negative_price": raw(price=-1.0),
        "negative_quantity": raw(quantity=-2),
        "unknown_item": raw(item_id="ghost"),
        "rejected_by_reader": raw(ts=None, user_id=None, reject_reason="malformed_line: x"),
    }
    frame = pl.DataFrame(list(cases.values()), schema=schemas.RAW_EVENT_SCHEMA)
    split = rules.apply_rules(frame, rules.event_rules(NOW, timedelta(minutes=10), pl.Series(["i1"])))
    assert split.clean["event_id"].to_list() == ["ok"]
    assert split.quarantined["rule"].to_list() == [name for name in cases if name]


def test_a_row_breaking_several_rules_lists_them_all():
    frame = pl.DataFrame([raw(user_id=None, price=-3.0)], schema=schemas.RAW_EVENT_SCHEMA)
    split = rules.apply_rules(frame, rules.event_rules(NOW, timedelta(0), None))
    assert split.quarantined["rule"].to_list() == ["missing_user;negative_price"]


def test_catalog_rules():
    base = {"item_id": "i1", "title": "Lamp", "price": 1.0, "updated_at": NOW, "reject_reason": None}
    frame = pl.DataFrame(
        [base, {**base, "title": None}, {**base, "price": -1.0}, {**base, "item_id": None}],
        schema_overrides={"updated_at": pl.Datetime("us", "UTC"), "reject_reason": pl.String},
    )
    split = rules.apply_rules(frame, rules.catalog_rules())
    assert split.clean.height == 1
    assert split.quarantined["rule"].to_list() == ["missing_title", "negative_price", "missing_item_id"]
