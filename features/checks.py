"""Checks of the online store against the warehouse, as plain functions.

Dagster wraps them as asset checks; each returns whether it passed plus the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from features.online import OnlineSequences


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def check_all_users_online(
    sequences: OnlineSequences, warehouse: duckdb.DuckDBPyConnection, batch: int = 1000
) -> CheckResult:
    """Every user with a sequence in the warehouse's ``user_sequences`` is readable online."""
    users = [
        u for (u,) in warehouse.execute("SELECT user_id FROM user_sequences WHERE length > 0").fetchall()
    ]
    missing: list[str] = []
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        missing += [s.user_id for s in sequences.read_many(chunk) if len(s) == 0]
    return CheckResult(
        passed=not missing,
        description=f"{len(users) - len(missing)} of {len(users)} users with a sequence are readable online",
        metadata={"users": len(users), "missing": len(missing), "missing_sample": missing[:10]},
    )


def check_sample_matches_warehouse(
    sequences: OnlineSequences, warehouse: duckdb.DuckDBPyConnection, sample: int = 100, seed: int = 0
) -> CheckResult:
    """A seeded sample of users: online items and event types equal ``user_sequences``.

    A user whose online row is newer than the warehouse's last event (clicks appended in
    real time since the last ingest) is counted as ahead, not as a mismatch.
    """
    rows = warehouse.execute(
        f"SELECT user_id, item_ids, event_types, last_event_ts FROM user_sequences "
        f"WHERE length > 0 USING SAMPLE reservoir({int(sample)} ROWS) REPEATABLE ({int(seed)})"
    ).fetchall()
    online = sequences.read_many([r[0] for r in rows]) if rows else []
    mismatched, ahead = [], []
    for (user_id, item_ids, event_types, last_ts), got in zip(rows, online, strict=True):
        if got.item_ids == list(item_ids) and got.event_types == list(event_types):
            continue
        if got.last_event_ts is not None and _seconds(got.last_event_ts) > _seconds(last_ts):
            ahead.append(user_id)
        else:
            mismatched.append(user_id)
    return CheckResult(
        passed=not mismatched,
        description=f"{len(rows) - len(mismatched) - len(ahead)} of {len(rows)} sampled users match the warehouse",
        metadata={
            "sampled": len(rows),
            "mismatched": len(mismatched),
            "ahead_of_warehouse": len(ahead),
            "mismatched_sample": mismatched[:10],
        },
    )


def _seconds(ts: datetime) -> int:
    # The online store keeps event times in whole seconds.
    return int(ts.timestamp())
