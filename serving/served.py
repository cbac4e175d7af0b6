"""Which recommendation ids were served: read from the log the recommender writes.

The recommender logs every answer to ``landing/served/<YYYY-MM-DD>/*.jsonl`` (one file per
process and day). Feedback on a recommendation is only taken for an id found there, so a
made-up or mistyped ``rec_id`` is a 404 instead of a training row about nothing. Files are
read incrementally (only the bytes appended since the last look) and only for the last
``days`` days, which bounds both the work per lookup and the ids kept in memory.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

DEFAULT_DAYS = 2


class ServedLog:
    def __init__(self, landing_dir: Path | str, days: int = DEFAULT_DAYS):
        self.root = Path(landing_dir) / "served"
        self.days = days
        self._lock = threading.Lock()
        self._offsets: dict[Path, int] = {}
        self._ids: dict[date, set[str]] = {}

    def _window(self, today: date) -> list[date]:
        return [today - timedelta(days=n) for n in range(self.days)]

    def _refresh(self, today: date) -> None:
        window = self._window(today)
        for day in list(self._ids):
            if day not in window:
                del self._ids[day]
        self._offsets = {
            p: o for p, o in self._offsets.items() if p.parent.name in {d.isoformat() for d in window}
        }
        for day in window:
            folder = self.root / day.isoformat()
            if not folder.is_dir():
                continue
            ids = self._ids.setdefault(day, set())
            for path in sorted(folder.glob("*.jsonl")):
                offset = self._offsets.get(path, 0)
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
                end = data.rfind(b"\n") + 1  # a line still being written is read next time
                for line in data[:end].splitlines():
                    try:
                        rec_id = json.loads(line).get("rec_id")
                    except (ValueError, AttributeError):
                        continue  # a damaged line names no id
                    if isinstance(rec_id, str):
                        ids.add(rec_id)
                self._offsets[path] = offset + end

    def __contains__(self, rec_id: str) -> bool:
        """Whether ``rec_id`` was served in the last ``days`` days (UTC)."""
        with self._lock:
            if any(rec_id in ids for ids in self._ids.values()):
                return True
            self._refresh(datetime.now(UTC).date())
            return any(rec_id in ids for ids in self._ids.values())
