"""Dialogue state per session (turns, slots, replies) and the slots a shopper states.

Three stores share one small interface: in-memory (tests), SQLite (the local default) and
Redis (the production profile). The slots (order number, e-mail...) fill the placeholders
of replies (``training.support.placeholders``).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from pathlib import Path
from typing import Protocol

Turn = tuple[str, str]  # (role, text), role "user" or "assistant"


class DialogueStore(Protocol):
    def append_turn(self, session_id: str, role: str, text: str) -> None: ...
    def turns(self, session_id: str, last: int) -> list[Turn]: ...
    def slots(self, session_id: str) -> dict[str, str]: ...
    def set_slots(self, session_id: str, values: dict[str, str]) -> None: ...
    def save_reply(self, reply_id: str, record: dict) -> None: ...
    def get_reply(self, reply_id: str) -> dict | None: ...


class InMemoryStore:
    def __init__(self) -> None:
        self._turns: dict[str, list[Turn]] = {}
        self._slots: dict[str, dict[str, str]] = {}
        self._replies: dict[str, dict] = {}
        self._lock = threading.Lock()

    def append_turn(self, session_id: str, role: str, text: str) -> None:
        with self._lock:
            self._turns.setdefault(session_id, []).append((role, text))

    def turns(self, session_id: str, last: int) -> list[Turn]:
        return list(self._turns.get(session_id, [])[-last:])

    def slots(self, session_id: str) -> dict[str, str]:
        return dict(self._slots.get(session_id, {}))

    def set_slots(self, session_id: str, values: dict[str, str]) -> None:
        with self._lock:
            self._slots.setdefault(session_id, {}).update(values)

    def save_reply(self, reply_id: str, record: dict) -> None:
        self._replies[reply_id] = dict(record)

    def get_reply(self, reply_id: str) -> dict | None:
        return self._replies.get(reply_id)


class SQLiteStore:
    """One SQLite file; safe across threads of one process and across processes."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(
                """
                CREATE TABLE IF NOT EXISTS turns (session_id TEXT, seq INTEGER PRIMARY KEY AUTOINCREMENT,
                                                  role TEXT, text TEXT);
                CREATE INDEX IF NOT EXISTS turns_session ON turns (session_id, seq);
                CREATE TABLE IF NOT EXISTS slots (session_id TEXT, name TEXT, value TEXT,
                                                  PRIMARY KEY (session_id, name));
                CREATE TABLE IF NOT EXISTS replies (reply_id TEXT PRIMARY KEY, record TEXT);
                """
            )

    def append_turn(self, session_id: str, role: str, text: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO turns (session_id, role, text) VALUES (?, ?, ?)", (session_id, role, text)
            )

    def turns(self, session_id: str, last: int) -> list[Turn]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT role, text FROM turns WHERE session_id = ? ORDER BY seq DESC LIMIT ?",
                (session_id, last),
            ).fetchall()
        return [(r, t) for r, t in reversed(rows)]

    def slots(self, session_id: str) -> dict[str, str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, value FROM slots WHERE session_id = ?", (session_id,)
            ).fetchall()
        return dict(rows)

    def set_slots(self, session_id: str, values: dict[str, str]) -> None:
        with self._lock:
            self._conn.executemany(
                "INSERT OR REPLACE INTO slots VALUES (?, ?, ?)",
                [(session_id, k, v) for k, v in values.items()],
            )

    def save_reply(self, reply_id: str, record: dict) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO replies VALUES (?, ?)", (reply_id, json.dumps(record)))

    def get_reply(self, reply_id: str) -> dict | None:
        with self._lock:
            row = self._conn.execute("SELECT record FROM replies WHERE reply_id = ?", (reply_id,)).fetchone()
        return json.loads(row[0]) if row else None


class RedisStore:
    """Dialogue state in Redis (production profile); sessions expire after ``ttl_s`` idle seconds."""

    def __init__(self, url: str, ttl_s: int = 7 * 24 * 3600, prefix: str = "shopml:support:") -> None:
        import redis

        self._redis = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2)
        self._ttl = ttl_s
        self._prefix = prefix

    def ping(self) -> bool:
        return bool(self._redis.ping())

    def _k(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def append_turn(self, session_id: str, role: str, text: str) -> None:
        key = self._k("turns", session_id)
        # RPUSH is atomic, so concurrent messages of one session are never lost.
        with self._redis.pipeline() as pipe:
            pipe.rpush(key, json.dumps([role, text]))
            pipe.expire(key, self._ttl)
            pipe.execute()

    def turns(self, session_id: str, last: int) -> list[Turn]:
        return [tuple(json.loads(x)) for x in self._redis.lrange(self._k("turns", session_id), -last, -1)]

    def slots(self, session_id: str) -> dict[str, str]:
        return self._redis.hgetall(self._k("slots", session_id))

    def set_slots(self, session_id: str, values: dict[str, str]) -> None:
        if values:
            key = self._k("slots", session_id)
            self._redis.hset(key, mapping=values)
            self._redis.expire(key, self._ttl)

    def save_reply(self, reply_id: str, record: dict) -> None:
        self._redis.set(self._k("reply", reply_id), json.dumps(record), ex=self._ttl)

    def get_reply(self, reply_id: str) -> dict | None:
        raw = self._redis.get(self._k("reply", reply_id))
        return json.loads(raw) if raw else None


def make_store(profile: str, data_dir: Path, redis_url: str) -> DialogueStore:
    """Redis in the production profile, a SQLite file under data_dir otherwise."""
    if profile == "production":
        return RedisStore(redis_url)
    return SQLiteStore(data_dir / "support" / "dialogue.sqlite")


# --- slots and placeholders

_EXTRACTORS = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"),
    "invoice_number": re.compile(
        r"\b(?:invoice|bill)\s*(?:number|no\.?|#|id)?\s*[:#]?\s*([A-Z0-9-]{4,})\b", re.I
    ),
    "order_number": re.compile(
        r"\b(?:order|purchase)\s*(?:number|no\.?|#|id)?\s*[:#]?\s*([A-Z0-9-]*\d[A-Z0-9-]{3,})\b", re.I
    ),
    "name": re.compile(r"\bmy name is ([A-Z][a-z]+(?: [A-Z][a-z]+)?)"),
}
# A bare long number is an order number when the message speaks of one.
_BARE_NUMBER = re.compile(r"\b#?(\d{5,})\b")


def extract_slots(text: str) -> dict[str, str]:
    """Slot values the shopper stated in one message (order, invoice, email, name)."""
    found: dict[str, str] = {}
    for slot, pattern in _EXTRACTORS.items():
        match = pattern.search(text)
        if match:
            found[slot] = match.group(1) if match.groups() else match.group(0)
    if (
        "order_number" not in found
        and "invoice_number" not in found
        and re.search(r"order|purchase", text, re.I)
    ):
        match = _BARE_NUMBER.search(text)
        if match:
            found["order_number"] = match.group(1)
    return found
