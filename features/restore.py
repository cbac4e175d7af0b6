"""Re-hydrate a lost online store: the offline sources, then the clicks logged since.

After Redis came back empty, every answer fell back to popularity until the next ingest and
materialisation, and the clicks logged during the outage never reached the store.
``restore`` reloads every offline source into the online store (a full materialisation),
then replays the events the services logged to the landing folder after each user's newest
offline row (they are not in the warehouse yet), in event-time order, so each user's
sequence is what the next ingest will compute. ``shopml features restore`` runs it; the
recommender service runs it at start when it finds the store empty.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from data_contracts.schemas import ITEM_EVENT_TYPES
from data_contracts.settings import Settings
from features.config import FeatureStoreConfig, open_store
from features.online import OnlineSequences, open_sequences
from features.sources import USER_HISTORY_FILE
from features.store import apply, materialize

# The files the services' landing log writes: landing/events/<day>/events-<host>-<pid>.jsonl.
LOGGED_EVENTS = "events-*.jsonl"


@dataclass(frozen=True)
class Restored:
    users: int  # users loaded from the offline store
    replayed: int  # logged events appended after them
    seconds: float

    def as_dict(self) -> dict:
        return {"users": self.users, "replayed": self.replayed, "seconds": round(self.seconds, 2)}


def newest_offline(offline_dir: Path) -> dict[str, datetime]:
    """Each user's newest event time in the offline user history (what materialisation loads)."""
    path = offline_dir / USER_HISTORY_FILE
    if not path.exists():
        return {}
    with duckdb.connect() as conn:
        rows = conn.execute(
            "SELECT user_id, max(event_timestamp) FROM read_parquet(?) GROUP BY user_id", [str(path)]
        ).fetchall()
    return dict(rows)


def logged_events(landing_dir: Path) -> list[dict]:
    """The item events the services logged, oldest first (damaged lines are skipped)."""
    events = []
    for path in sorted((landing_dir / "events").glob(f"*/{LOGGED_EVENTS}")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
                ts = datetime.fromisoformat(event["ts"].replace("Z", "+00:00"))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if event.get("event_type") in ITEM_EVENT_TYPES and event.get("user_id") and event.get("item_id"):
                events.append({**event, "ts": ts})
    events.sort(key=lambda e: (e["ts"], e.get("event_id") or ""))
    return events


def replay(sequences: OnlineSequences, newest: dict[str, datetime], events: list[dict]) -> int:
    """Append the logged events newer than each user's offline state; returns how many."""
    replayed = 0
    for event in events:
        offline = newest.get(event["user_id"])
        if offline is not None and event["ts"] <= offline:
            continue  # already in the warehouse, so in what was just materialised
        sequences.append(event["user_id"], event["item_id"], event["event_type"], ts=event["ts"])
        replayed += 1
    return replayed


def restore(settings: Settings, sequences: OnlineSequences | None = None) -> Restored:
    """Reload the online store from the offline sources, then replay the logged events."""
    started = time.monotonic()
    config = FeatureStoreConfig.from_settings(settings)
    store = open_store(config)
    apply(store, config)
    materialize(store, config, full=True)
    own = sequences is None
    sequences = sequences or open_sequences(store, config)
    try:
        newest = newest_offline(config.offline_dir)
        replayed = replay(sequences, newest, logged_events(settings.landing_dir))
    finally:
        if own:
            sequences.close()
    return Restored(len(newest), replayed, time.monotonic() - started)
