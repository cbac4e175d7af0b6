"""Where the feature views read from: Parquet files written from the warehouse.

The paths depend on the configured Feast data folder, so the sources are built by a
function rather than declared at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from feast import FileSource, PushSource

USER_HISTORY_FILE = "user_history.parquet"
ITEM_FEATURES_FILE = "item_features.parquet"
USER_RECENT_ITEMS_PUSH = "user_recent_items_push"


@dataclass(frozen=True)
class Sources:
    # One row per (user, event time): the user's state right after that event.
    user_history: FileSource
    # Real-time clicks from serving; its batch source is user_history.
    user_recent_items_push: PushSource
    # One row per item: catalog attributes and popularity.
    item_features: FileSource


def make_sources(offline_dir: Path) -> Sources:
    user_history = FileSource(
        name="user_history",
        path=str(offline_dir / USER_HISTORY_FILE),
        timestamp_field="event_timestamp",
        description="Per user and event time: the last N items and cumulative counts up to it",
    )
    return Sources(
        user_history=user_history,
        user_recent_items_push=PushSource(name=USER_RECENT_ITEMS_PUSH, batch_source=user_history),
        item_features=FileSource(
            name="item_features",
            path=str(offline_dir / ITEM_FEATURES_FILE),
            timestamp_field="event_timestamp",
            description="Per item: the current catalog row joined with item_stats",
        ),
    )
