"""The feature views: what is served per user and per item, with schema, TTL and tags.

A TTL of zero means "never expires": a shopper's last N items stay their last N items
however long ago they were, and Feast then looks back without limit in point-in-time joins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Array, Bool, Float64, Int64, String, UnixTimestamp

from features.entities import item, user
from features.sources import Sources

USER_RECENT_ITEMS = "user_recent_items"
ITEM_FEATURES = "item_features"
USER_STATS = "user_stats"

# The online sequence, in the order of the fields below.
RECENT_ITEM_IDS = "recent_item_ids"
RECENT_EVENT_TYPES = "recent_event_types"
LAST_EVENT_TS = "last_event_ts"
SEQUENCE_FIELDS = (RECENT_ITEM_IDS, RECENT_EVENT_TYPES, LAST_EVENT_TS)

NEVER_EXPIRES = timedelta(0)


@dataclass(frozen=True)
class Views:
    user_recent_items: FeatureView
    item_features: FeatureView
    user_stats: FeatureView


def make_views(sources: Sources) -> Views:
    return Views(
        user_recent_items=FeatureView(
            name=USER_RECENT_ITEMS,
            entities=[user],
            ttl=NEVER_EXPIRES,
            schema=[
                Field(name=RECENT_ITEM_IDS, dtype=Array(String), description="Last N item ids, newest last"),
                Field(name=RECENT_EVENT_TYPES, dtype=Array(String), description="Event type of each item"),
                Field(name=LAST_EVENT_TS, dtype=UnixTimestamp, description="Time of the newest event"),
            ],
            # A push source: serving appends clicks online at once; batches come from user_history.
            source=sources.user_recent_items_push,
            online=True,
            description="Each shopper's behaviour sequence, the recommender's main input",
            tags={"owner": "recommender", "entity": "user", "realtime": "push"},
        ),
        item_features=FeatureView(
            name=ITEM_FEATURES,
            entities=[item],
            ttl=NEVER_EXPIRES,
            schema=[
                Field(name="category", dtype=String, description="Category path, levels joined by ' > '"),
                Field(name="brand", dtype=String),
                Field(name="price", dtype=Float64),
                Field(name="popularity", dtype=Int64, description="Item events of every type"),
                Field(name="in_stock", dtype=Bool),
            ],
            source=sources.item_features,
            online=True,
            description="Catalog attributes and popularity of each item (side features, filters)",
            tags={"owner": "recommender", "entity": "item"},
        ),
        user_stats=FeatureView(
            name=USER_STATS,
            entities=[user],
            ttl=NEVER_EXPIRES,
            schema=[
                Field(
                    name="total_events", dtype=Int64, description="Item events so far, before trimming to N"
                ),
                Field(name="purchases", dtype=Int64),
                Field(name="carts", dtype=Int64, description="add_to_cart events"),
                Field(name="first_event_ts", dtype=UnixTimestamp),
            ],
            source=sources.user_history,
            online=True,
            description="Cumulative activity counts of each shopper",
            tags={"owner": "recommender", "entity": "user"},
        ),
    )
