"""Row-level quarantine rules: each rule names a condition under which a row is rejected.

The rules run in Polars on every row (fast); the Great Expectations suites then report
the table-level result on what passed. A rejected row keeps all its values and gets a
``rule`` column listing every rule it broke, separated by ";".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from data_contracts import schemas

Rule = tuple[str, pl.Expr]


def _blank(column: str) -> pl.Expr:
    return pl.col(column).is_null() | (pl.col(column).str.strip_chars() == "")


def event_rules(now: datetime, future_skew: timedelta, known_items: pl.Series | None) -> list[Rule]:
    """The canonical event contract. ``known_items``: catalog item ids (None skips that rule)."""
    rules: list[Rule] = [
        ("rejected_by_reader", pl.col("reject_reason").is_not_null()),
        ("missing_event_id", _blank("event_id")),
        ("missing_ts", pl.col("ts").is_null() & pl.col("reject_reason").is_null()),
        ("future_ts", pl.col("ts") > pl.lit(now + future_skew).cast(pl.Datetime("us", "UTC"))),
        # Before the shop could exist online: a wrong unit (seconds read as milliseconds) or a
        # zero date.
        ("ts_out_of_range", pl.col("ts") < pl.lit(schemas.EARLIEST_TS).cast(pl.Datetime("us", "UTC"))),
        ("missing_user", _blank("user_id") & pl.col("reject_reason").is_null()),
        ("missing_item", _blank("item_id") & pl.col("reject_reason").is_null()),
        (
            "unknown_event_type",
            ~pl.col("event_type").is_in(schemas.EVENT_TYPES) & pl.col("reject_reason").is_null(),
        ),
        ("negative_price", pl.col("price") < 0),
        ("negative_quantity", pl.col("quantity") < 0),
    ]
    if known_items is not None:
        rules.append(("unknown_item", ~_blank("item_id") & ~pl.col("item_id").is_in(known_items.implode())))
    return rules


def catalog_rules() -> list[Rule]:
    return [
        ("rejected_by_reader", pl.col("reject_reason").is_not_null()),
        ("missing_item_id", _blank("item_id")),
        ("missing_title", _blank("title")),
        ("missing_updated_at", pl.col("updated_at").is_null() & pl.col("reject_reason").is_null()),
        ("missing_price", pl.col("price").is_null() & pl.col("reject_reason").is_null()),
        ("negative_price", pl.col("price") < 0),
    ]


@dataclass
class Split:
    clean: pl.DataFrame
    quarantined: pl.DataFrame  # the input columns plus `rule`


def apply_rules(frame: pl.DataFrame, rules: list[Rule]) -> Split:
    """Split rows into those that pass every rule and those that break at least one."""
    conditions = [cond.fill_null(False) for _, cond in rules]
    broken = frame.select(pl.any_horizontal(conditions).alias("broken")).to_series()
    clean = frame.filter(~broken)
    # Naming the broken rules is the costly part: do it for the few broken rows only.
    names = pl.concat_str(
        [pl.when(cond).then(pl.lit(name)) for (name, _), cond in zip(rules, conditions, strict=True)],
        separator=";",
        ignore_nulls=True,
    )
    quarantined = frame.filter(broken).with_columns(names.alias("rule"))
    return Split(clean, quarantined)
