"""Canonical table schemas: what every adapter produces and every consumer may rely on."""

from __future__ import annotations

from datetime import datetime, timezone

import polars as pl

EVENT_TYPES = (
    "view",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "refund",
    "rec_impression",
    "rec_click",
)
# Event types that carry an item a shopper interacted with; these make up user_sequences.
ITEM_EVENT_TYPES = ("view", "add_to_cart", "remove_from_cart", "purchase", "refund", "rec_click")

# The canonical event, as stored in the warehouse `events` table.
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "user_id": pl.String(),
    "item_id": pl.String(),
    "event_type": pl.String(),
    "session_id": pl.String(),
    "quantity": pl.Int64(),
    "price": pl.Float64(),
    "source": pl.String(),
    # The served recommendation this event answers (a rec_click), else null.
    "rec_id": pl.String(),
}
EVENT_COLUMNS = tuple(EVENT_SCHEMA)
# Columns a canonical file must have; the others may be missing and are then null.
EVENT_REQUIRED = ("ts", "user_id", "item_id", "event_type")
# Events before this are out of range (quarantined as ts_out_of_range).
EARLIEST_TS = datetime(1990, 1, 1, tzinfo=timezone.utc)

# Where a raw row came from: kept on raw and quarantine rows so every row can be traced.
LINEAGE_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String(),
    "source_row": pl.Int64(),
    # The original line for rows that could not be parsed at all (else null).
    "raw_line": pl.String(),
    # Why the reader or adapter rejected the row (else null), e.g. "malformed_line: ...".
    "reject_reason": pl.String(),
}

RAW_EVENT_SCHEMA = {**EVENT_SCHEMA, **LINEAGE_SCHEMA}

CATALOG_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.String(),
    "title": pl.String(),
    "description": pl.String(),
    # Category path, levels joined by " > ".
    "category": pl.String(),
    "brand": pl.String(),
    "price": pl.Float64(),
    "currency": pl.String(),
    "in_stock": pl.Boolean(),
    "updated_at": pl.Datetime("us", "UTC"),
}
CATALOG_COLUMNS = tuple(CATALOG_SCHEMA)
CATALOG_REQUIRED = ("item_id", "title", "price", "updated_at")
RAW_CATALOG_SCHEMA = {**CATALOG_SCHEMA, **LINEAGE_SCHEMA}

# What the serving layer logs back to the landing folder (landing/<kind>/<YYYY-MM-DD>/*.jsonl),
# one JSON object a line; timestamps as ISO 8601 text in UTC.
SERVED_RECOMMENDATION_SCHEMA: dict[str, pl.DataType] = {
    "rec_id": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "user_id": pl.String(),
    "session_id": pl.String(),
    "model_version": pl.String(),  # the model's tag, or "popularity" for a fallback
    # The baseline's name ("ease", "cooccurrence", "most_popular") when the promoted model is a
    # baseline that no trained model beat on validation; null when a trained model answered.
    "baseline": pl.String(),
    "items": pl.List(pl.String()),  # in the order shown
    "scores": pl.List(pl.Float64()),
    "fallback": pl.String(),  # why the model was not used (e.g. "feature_store_down"), else null
    # The traffic split (serving/experiments.py) and its variant that answered; null without one.
    "experiment": pl.String(),
    "variant": pl.String(),
}
# A search's result list; a click on one of its items is a rec_click whose rec_id is the search_id.
SERVED_SEARCH_SCHEMA: dict[str, pl.DataType] = {
    "search_id": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "user_id": pl.String(),
    "session_id": pl.String(),
    "query": pl.String(),
    "index_version": pl.Int64(),
    "personalised": pl.Boolean(),
    "items": pl.List(pl.String()),  # in the order shown
    "scores": pl.List(pl.Float64()),
}
SUPPORT_REPLY_SCHEMA: dict[str, pl.DataType] = {
    "reply_id": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "session_id": pl.String(),
    "message": pl.String(),
    "reply": pl.String(),
    "sources": pl.List(pl.String()),
    "top_score": pl.Float64(),
    "handover": pl.Boolean(),
    "model_version": pl.String(),
    # What the turn was taken for (support, product_request, small_talk, ...; null in lines
    # written before the router) and the products the reply showed, in order.
    "goal": pl.String(),
    "products": pl.List(pl.String()),
    # The caller's shopper id when it gave one, the traffic split (serving/experiments.py) and
    # its variant that replied; null without them (and in lines written before them).
    "user_id": pl.String(),
    "experiment": pl.String(),
    "variant": pl.String(),
}
FEEDBACK_SCHEMA: dict[str, pl.DataType] = {
    "feedback_id": pl.String(),
    "target_id": pl.String(),  # reply_id or rec_id
    "target_kind": pl.String(),  # "reply" or "recommendation"
    "user_id": pl.String(),
    "session_id": pl.String(),
    "rating": pl.Int64(),  # +1 or -1
    "reason": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
}


# The support corpus (training/support/corpus.py reads Bitext and ABCD into these): Q&A pairs,
# KB articles, and feedback pairs for the ranker (rules in data_contracts/support.py).
SUPPORT_QA_SCHEMA: dict[str, pl.DataType] = {
    "qa_id": pl.String(),
    "question": pl.String(),
    "answer": pl.String(),
    "intent": pl.String(),
    "category": pl.String(),
    "source": pl.String(),
}
SUPPORT_ARTICLE_SCHEMA: dict[str, pl.DataType] = {
    "article_id": pl.String(),
    "title": pl.String(),
    "body": pl.String(),
    "intent": pl.String(),
    "category": pl.String(),
    "source": pl.String(),
}
SUPPORT_FEEDBACK_SCHEMA: dict[str, pl.DataType] = {
    "reply_id": pl.String(),
    "rating": pl.Int64(),
    "reason": pl.String(),
    "context": pl.String(),
    "reply": pl.String(),
    "category": pl.String(),
}


def in_category(path: str | None, wanted: str) -> bool:
    """``wanted`` is the category path or one of its ancestors, ignoring case and outer
    spaces: "home" matches "Home > Kitchen", not "Homeware"."""
    if path is None:
        return False
    path, wanted = path.lower(), wanted.strip().lower()
    return path == wanted or path.startswith(wanted + " > ")


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Select the schema's columns in order, adding missing ones as nulls and casting."""
    return frame.select(
        [
            (pl.col(name) if name in frame.columns else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in schema.items()
        ]
    )


# Warehouse `user_sequences`: one row per user, lists newest last, at most N long.
USER_SEQUENCE_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "item_ids": pl.List(pl.String()),
    "event_types": pl.List(pl.String()),
    "event_times": pl.List(pl.Datetime("us", "UTC")),
    "length": pl.Int64(),  # items in the lists (<= N)
    "total_events": pl.Int64(),  # all item events of the user, before trimming to N
    "last_event_ts": pl.Datetime("us", "UTC"),
}

# Warehouse `item_stats`: one row per catalog item (items without events have zero counts).
ITEM_STATS_SCHEMA: dict[str, pl.DataType] = {
    "item_id": pl.String(),
    "views": pl.Int64(),
    "carts": pl.Int64(),
    "purchases": pl.Int64(),
    "refunds": pl.Int64(),
    "users": pl.Int64(),  # distinct users with any item event
    "popularity": pl.Int64(),  # item events of every type
    "popularity_rank": pl.Int64(),  # 1 = most popular
    "conversion_rate": pl.Float64(),  # purchases / views (0 when never viewed)
    "first_seen": pl.Datetime("us", "UTC"),
    "last_seen": pl.Datetime("us", "UTC"),
    "updated_at": pl.Datetime("us", "UTC"),  # when the stats were computed
}
