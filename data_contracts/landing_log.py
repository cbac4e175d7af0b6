"""Append records to the landing folder, where the next ingest picks them up.

The serving layer logs what it served and what it heard back (events, served
recommendations, support replies, feedback) as JSON lines under
``landing/<kind>/<YYYY-MM-DD>/<kind>-<host>-<pid>.jsonl``: one file per process and day,
so several workers never write the same file, and each line is flushed whole.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from datetime import date, datetime, timezone
from pathlib import Path

from data_contracts.settings import Settings

# kind → folder under the landing folder. Events land where event files always land.
KINDS = {
    "events": "events",
    "served": "served",
    "searches": "searches",
    "replies": "replies",
    "feedback": "feedback",
}


def _json_default(value):
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to the landing log")


class LandingLog:
    """Thread-safe appender; one instance per process."""

    def __init__(self, settings: Settings):
        self.root = Path(settings.landing_dir)
        self._lock = threading.Lock()
        self._tag = f"{socket.gethostname()}-{os.getpid()}"

    def path(self, kind: str, day: date) -> Path:
        if kind not in KINDS:
            raise ValueError(f"unknown landing log kind {kind!r}; one of {sorted(KINDS)}")
        return self.root / KINDS[kind] / day.isoformat() / f"{kind}-{self._tag}.jsonl"

    def write(self, kind: str, record: dict, now: datetime | None = None) -> Path:
        """Append one record (a dict of JSON-able values, datetimes as UTC ISO text)."""
        now = now or datetime.now(timezone.utc)
        path = self.path(kind, now.date())
        line = json.dumps(record, default=_json_default, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                handle = open(path, "a", encoding="utf-8")
            except FileNotFoundError:  # a new day or kind: its folder first (not on every write)
                path.parent.mkdir(parents=True, exist_ok=True)
                handle = open(path, "a", encoding="utf-8")
            with handle:
                handle.write(line)
        return path
