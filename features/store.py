"""Register the feature repo and load the online store: ``apply`` and ``materialize``.

Materialisation is incremental by what changed, not by wall-clock windows: each offline
write records the earliest event time whose rows changed, and ``materialize`` loads only
``[that time, newest event]`` through Feast. Late events (older than the last run) are
therefore not skipped, and a second run with nothing new writes nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
from feast import FeatureStore

from features.config import FeatureStoreConfig
from features.definitions import feast_objects
from features.offline import read_state, write_state
from features.sources import ITEM_FEATURES_FILE, USER_HISTORY_FILE
from features.views import ITEM_FEATURES, USER_RECENT_ITEMS, USER_STATS

# Offline source -> (its Parquet file, the feature views it feeds).
SOURCE_VIEWS = {
    "user_history": (USER_HISTORY_FILE, (USER_RECENT_ITEMS, USER_STATS)),
    "item_features": (ITEM_FEATURES_FILE, (ITEM_FEATURES,)),
}


def apply(store: FeatureStore, config: FeatureStoreConfig) -> list[str]:
    """Register (or update) every entity, source, view and service; returns their names."""
    objects = feast_objects(config.offline_dir)
    store.apply(objects)
    if store.config.online_store.type == "sqlite":
        # WAL lets serving read while an append or a materialisation writes (persists in the file).
        with sqlite3.connect(config.sqlite_path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    return [obj.name for obj in objects]


@dataclass(frozen=True)
class Materialized:
    source: str
    views: tuple[str, ...]
    start: datetime
    end: datetime
    # Entities whose online row was (re)written.
    entities: int


def materialize(store: FeatureStore, config: FeatureStoreConfig, full: bool = False) -> list[Materialized]:
    """Load every changed window of the offline sources into the online store.

    ``full`` reloads every source from its oldest row (after deleting events, or to repair
    an online store).
    """
    offline_dir = config.offline_dir
    dirty = read_state(offline_dir)
    done: list[Materialized] = []
    for source, (file_name, views) in SOURCE_VIEWS.items():
        path = offline_dir / file_name
        start = _oldest(path) if full and path.exists() else dirty.get(source)
        if start is None:
            continue
        entities, newest = _window_size(path, start)
        if newest is not None:
            # Feast's window is inclusive at both ends; a microsecond past the newest row.
            end = newest + timedelta(microseconds=1)
            store.materialize(start_date=start, end_date=end, feature_views=list(views))
            done.append(Materialized(source, views, start, end, entities))
        # Forget the mark only after its window is loaded (a failure keeps it for the retry).
        remaining = read_state(offline_dir)
        remaining.pop(source, None)
        write_state(offline_dir, remaining)
    return done


def _oldest(path) -> datetime | None:
    with duckdb.connect() as conn:
        return conn.execute("SELECT min(event_timestamp) FROM read_parquet(?)", [str(path)]).fetchone()[0]


def _window_size(path, start: datetime) -> tuple[int, datetime | None]:
    key = "item_id" if path.name == ITEM_FEATURES_FILE else "user_id"
    with duckdb.connect() as conn:
        entities, newest = conn.execute(
            f"SELECT count(DISTINCT {key}), max(event_timestamp) FROM read_parquet(?) "
            "WHERE event_timestamp >= ?",
            [str(path), start],
        ).fetchone()
    return entities, newest
