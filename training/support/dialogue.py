"""Dialogue state per session (turns, slots, replies) and the slots a shopper states.

Three stores share one small interface: in-memory (tests), SQLite (the local default) and
Redis (the production profile). The slots (order number, e-mail...) fill the placeholders
of replies (``training.support.placeholders``); the state (a JSON object) holds the product
side of the dialogue: its constraints and the products shown (``training.support.products``).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Protocol

Turn = tuple[str, str]  # (role, text), role "user" or "assistant"


# How long dialogue state (turns, slots, session bindings, reply records) is kept after it
# was last written: it holds personal data (order numbers, e-mail addresses, names).
DEFAULT_TTL_S = 24 * 3600


class DialogueStore(Protocol):
    def claim_session(self, session_id: str, token_hash: str) -> str: ...
    def append_turn(self, session_id: str, role: str, text: str) -> None: ...
    def turns(self, session_id: str, last: int) -> list[Turn]: ...
    def slots(self, session_id: str) -> dict[str, str]: ...
    def set_slots(self, session_id: str, values: dict[str, str]) -> None: ...
    def state(self, session_id: str) -> dict: ...
    def set_state(self, session_id: str, value: dict) -> None: ...
    def save_reply(self, reply_id: str, record: dict) -> None: ...
    def get_reply(self, reply_id: str) -> dict | None: ...


class InMemoryStore:
    """Dialogue state in this process (tests, benchmarks); entries expire after ``ttl_s``."""

    def __init__(self, ttl_s: float = DEFAULT_TTL_S, clock=time.time) -> None:
        self._ttl = ttl_s
        self._clock = clock
        self._sessions: dict[str, tuple[float, str]] = {}
        self._turns: dict[str, list[tuple[float, Turn]]] = {}
        self._slots: dict[str, dict[str, tuple[float, str]]] = {}
        self._replies: dict[str, tuple[float, dict]] = {}
        self._states: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def _fresh(self, ts: float) -> bool:
        return ts >= self._clock() - self._ttl

    def claim_session(self, session_id: str, token_hash: str) -> str:
        with self._lock:
            held = self._sessions.get(session_id)
            owner = held[1] if held and self._fresh(held[0]) else token_hash
            self._sessions[session_id] = (self._clock(), owner)
            return owner

    def append_turn(self, session_id: str, role: str, text: str) -> None:
        with self._lock:
            self._turns.setdefault(session_id, []).append((self._clock(), (role, text)))

    def turns(self, session_id: str, last: int) -> list[Turn]:
        with self._lock:
            return [t for ts, t in self._turns.get(session_id, []) if self._fresh(ts)][-last:]

    def slots(self, session_id: str) -> dict[str, str]:
        with self._lock:
            return {k: v for k, (ts, v) in self._slots.get(session_id, {}).items() if self._fresh(ts)}

    def set_slots(self, session_id: str, values: dict[str, str]) -> None:
        with self._lock:
            now = self._clock()
            self._slots.setdefault(session_id, {}).update({k: (now, v) for k, v in values.items()})

    def state(self, session_id: str) -> dict:
        with self._lock:
            held = self._states.get(session_id)
        return json.loads(held[1]) if held and self._fresh(held[0]) else {}

    def set_state(self, session_id: str, value: dict) -> None:
        with self._lock:
            self._states[session_id] = (self._clock(), json.dumps(value))

    def save_reply(self, reply_id: str, record: dict) -> None:
        with self._lock:
            self._replies[reply_id] = (self._clock(), dict(record))

    def get_reply(self, reply_id: str) -> dict | None:
        with self._lock:
            held = self._replies.get(reply_id)
        return dict(held[1]) if held and self._fresh(held[0]) else None


class SQLiteStore:
    """One SQLite file; safe across threads of one process and across processes.

    Every row carries the time it was written; reads ignore rows older than ``ttl_s`` and
    writes delete them (at most once a minute), so personal data does not outlive the TTL.
    """

    _TABLES = ("sessions", "turns", "slots", "replies", "states")

    def __init__(self, path: Path | str, ttl_s: float = DEFAULT_TTL_S, clock=time.time) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._ttl = ttl_s
        self._clock = clock
        self._purged = 0.0
        with self._lock:
            self._conn.executescript(
                """
                CREATE TABLE IF NOT EXISTS sessions (session_id TEXT PRIMARY KEY, token_hash TEXT, ts REAL);
                CREATE TABLE IF NOT EXISTS turns (session_id TEXT, seq INTEGER PRIMARY KEY AUTOINCREMENT,
                                                  role TEXT, text TEXT);
                CREATE INDEX IF NOT EXISTS turns_session ON turns (session_id, seq);
                CREATE TABLE IF NOT EXISTS slots (session_id TEXT, name TEXT, value TEXT,
                                                  PRIMARY KEY (session_id, name));
                CREATE TABLE IF NOT EXISTS replies (reply_id TEXT PRIMARY KEY, record TEXT);
                CREATE TABLE IF NOT EXISTS states (session_id TEXT PRIMARY KEY, value TEXT, ts REAL);
                """
            )
            # Files written before rows carried their time: those rows count as expired.
            for table in self._TABLES:
                columns = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
                if "ts" not in columns:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN ts REAL DEFAULT 0")

    def _cutoff(self) -> float:
        return self._clock() - self._ttl

    def _purge(self) -> None:
        # Called under the lock by writers.
        now = self._clock()
        if now - self._purged < 60:
            return
        self._purged = now
        for table in self._TABLES:
            self._conn.execute(f"DELETE FROM {table} WHERE ts < ?", (now - self._ttl,))

    def claim_session(self, session_id: str, token_hash: str) -> str:
        with self._lock:
            self._purge()
            now = self._clock()
            # A binding older than the TTL is gone: the id may be claimed again.
            self._conn.execute(
                "INSERT INTO sessions VALUES (?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET "
                "token_hash = CASE WHEN ts < ? THEN excluded.token_hash ELSE token_hash END, ts = excluded.ts",
                (session_id, token_hash, now, now - self._ttl),
            )
            (owner,) = self._conn.execute(
                "SELECT token_hash FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
        return owner

    def append_turn(self, session_id: str, role: str, text: str) -> None:
        with self._lock:
            self._purge()
            self._conn.execute(
                "INSERT INTO turns (session_id, role, text, ts) VALUES (?, ?, ?, ?)",
                (session_id, role, text, self._clock()),
            )

    def turns(self, session_id: str, last: int) -> list[Turn]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT role, text FROM turns WHERE session_id = ? AND ts >= ? ORDER BY seq DESC LIMIT ?",
                (session_id, self._cutoff(), last),
            ).fetchall()
        return [(r, t) for r, t in reversed(rows)]

    def slots(self, session_id: str) -> dict[str, str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, value FROM slots WHERE session_id = ? AND ts >= ?", (session_id, self._cutoff())
            ).fetchall()
        return dict(rows)

    def set_slots(self, session_id: str, values: dict[str, str]) -> None:
        with self._lock:
            self._purge()
            now = self._clock()
            self._conn.executemany(
                "INSERT OR REPLACE INTO slots (session_id, name, value, ts) VALUES (?, ?, ?, ?)",
                [(session_id, k, v, now) for k, v in values.items()],
            )

    def state(self, session_id: str) -> dict:
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM states WHERE session_id = ? AND ts >= ?", (session_id, self._cutoff())
            ).fetchone()
        return json.loads(row[0]) if row else {}

    def set_state(self, session_id: str, value: dict) -> None:
        with self._lock:
            self._purge()
            self._conn.execute(
                "INSERT OR REPLACE INTO states (session_id, value, ts) VALUES (?, ?, ?)",
                (session_id, json.dumps(value), self._clock()),
            )

    def save_reply(self, reply_id: str, record: dict) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO replies (reply_id, record, ts) VALUES (?, ?, ?)",
                (reply_id, json.dumps(record), self._clock()),
            )

    def get_reply(self, reply_id: str) -> dict | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT record FROM replies WHERE reply_id = ? AND ts >= ?", (reply_id, self._cutoff())
            ).fetchone()
        return json.loads(row[0]) if row else None


class RedisStore:
    """Dialogue state in Redis (production profile); every key expires ``ttl_s`` after its last write."""

    def __init__(self, url: str, ttl_s: float = DEFAULT_TTL_S, prefix: str = "shopml:support:") -> None:
        import redis

        self._redis = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2)
        self._ttl = max(1, int(ttl_s))
        self._prefix = prefix

    def ping(self) -> bool:
        return bool(self._redis.ping())

    def _k(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    def claim_session(self, session_id: str, token_hash: str) -> str:
        key = self._k("session", session_id)
        # SET NX is atomic: of two first callers, one owns the session.
        self._redis.set(key, token_hash, nx=True, ex=self._ttl)
        with self._redis.pipeline() as pipe:
            pipe.get(key)
            pipe.expire(key, self._ttl)
            owner, _ = pipe.execute()
        return owner or token_hash

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

    def state(self, session_id: str) -> dict:
        raw = self._redis.get(self._k("state", session_id))
        return json.loads(raw) if raw else {}

    def set_state(self, session_id: str, value: dict) -> None:
        self._redis.set(self._k("state", session_id), json.dumps(value), ex=self._ttl)

    def save_reply(self, reply_id: str, record: dict) -> None:
        self._redis.set(self._k("reply", reply_id), json.dumps(record), ex=self._ttl)

    def get_reply(self, reply_id: str) -> dict | None:
        raw = self._redis.get(self._k("reply", reply_id))
        return json.loads(raw) if raw else None


def make_store(profile: str, data_dir: Path, redis_url: str, ttl_s: float = DEFAULT_TTL_S) -> DialogueStore:
    """Redis in the production profile, a SQLite file under data_dir otherwise."""
    if profile == "production":
        return RedisStore(redis_url, ttl_s)
    return SQLiteStore(data_dir / "support" / "dialogue.sqlite", ttl_s)


# --- slots and placeholders

_EXTRACTORS = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"),
    "invoice_number": re.compile(
        r"\b(?:invoice|bill)\s*(?:number|no\.?|#|id)?\s*(?:is\s+)?[:#]?\s*((?=[A-Z0-9-]*\d)[A-Z0-9-]{4,})\b",
        re.I,
    ),
    "order_number": re.compile(
        r"\b(?:order|purchase)\s*(?:number|no\.?|#|id)?\s*(?:is\s+)?[:#]?\s*([A-Z0-9-]*\d[A-Z0-9-]{3,})\b",
        re.I,
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


# Words around a slot value in a message that only gives it: "it's order 77342109", "here
# is my invoice number: INV-55210", "sure, my email is ann@example.com".
_SLOT_WORDS = frozenset(
    """order purchase invoice bill number no id email e mail address name my the it its it's is
    was here there this that sure yes yeah ok okay of for and please thanks thank you s""".split()
)


def only_slots(text: str) -> bool:
    """Whether the message gives slot values and nothing else: the answer to a question the
    assistant asked ("which order?"), to be read with the request it completes."""
    found = extract_slots(text)
    if not found:
        return False
    rest = text
    for value in found.values():
        rest = rest.replace(value, " ")
    words = re.findall(r"[a-z]+(?:'[a-z]+)?", rest.lower())
    return all(w in _SLOT_WORDS for w in words)


_REDACT = (
    (re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"), "<email>"),
    (re.compile(r"(?<!\w)\+?\d[\d\s().-]{6,}\d(?!\w)"), "<number>"),
    (re.compile(r"\b[A-Z0-9-]*\d[A-Z0-9-]*\d[A-Z0-9-]*\b"), "<number>"),
    (re.compile(r"\b(my name is) [A-Z][a-z]+(?: [A-Z][a-z]+)?"), r"\1 <name>"),
)


def redact(text: str | None, values: tuple[str, ...] = ()) -> str | None:
    """``text`` for a log: e-mail addresses, order, invoice and phone numbers, stated names and
    the given slot ``values`` masked."""
    if text is None:
        return None
    for value in sorted((v for v in values if v and len(v) >= 3), key=len, reverse=True):
        text = text.replace(value, "<redacted>")
    for pattern, mask in _REDACT:
        text = pattern.sub(mask, text)
    return text
