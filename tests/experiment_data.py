"""Served lists and shopper events of a traffic split with known click-through rates."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

NOW = datetime(2026, 1, 6, 12, tzinfo=timezone.utc)


def shop(
    conn, users: dict[str, int], ctr: dict[str, float], seed: int = 0, experiment: str = "rec-exp"
) -> None:
    """served_recommendations and events of ``experiment``: ``users[v]`` shoppers of variant v,
    two lists each, each list clicked with probability ``ctr[v]``; every click on i1 is carted
    an hour later."""
    rng = np.random.default_rng(seed)
    served, events = [], []
    for variant, count in users.items():
        for u in range(count):
            user = f"{variant}-{u}"
            for k in range(2):
                rec_id = f"{user}-{k}"
                served.append((rec_id, user, experiment, variant))
                if rng.random() < ctr[variant]:
                    events.append((rec_id, user, "i1", "rec_click", NOW))
                    events.append((None, user, "i1", "add_to_cart", NOW + timedelta(hours=1)))
    conn.execute(
        "CREATE TABLE served_recommendations (rec_id TEXT, user_id TEXT, experiment TEXT, variant TEXT)"
    )
    conn.executemany("INSERT INTO served_recommendations VALUES (?, ?, ?, ?)", served)
    conn.execute(
        "CREATE TABLE events (rec_id TEXT, user_id TEXT, item_id TEXT, event_type TEXT, ts TIMESTAMPTZ)"
    )
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", events)
