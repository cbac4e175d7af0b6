"""The SQLite backend: the rows of Feast's SQLite online store table for ``user_recent_items``."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from feast.infra.online_stores.helpers import extract_text_and_num

from features.online.base import OnlineSequences
from features.online.codec import (
    OnlineStoreError,
    UserSequence,
    _appended,
    _check_event,
    _decode,
    _encode,
)


class SqliteSequences(OnlineSequences):
    """The rows of Feast's SQLite online store table for ``user_recent_items``."""

    def __init__(
        self,
        path: Path,
        table: str,
        project: str,
        sequence_length: int,
        key_version: int,
        lock_timeout_s: float = 10.0,
    ):
        super().__init__(project, sequence_length, key_version, f"SQLite online store {path}")
        self.path = path
        self.table = table
        self.lock_timeout_s = lock_timeout_s
        # One connection per thread: sqlite3 connections must not share a transaction.
        self._local = threading.local()
        self._select_one = f'SELECT feature_name, value FROM "{table}" WHERE entity_key = ?'
        self._upsert = (
            f'INSERT INTO "{table}" (entity_key, feature_name, value, value_text, event_ts, created_ts) '
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, "
            "event_ts = excluded.event_ts, created_ts = excluded.created_ts"
        )
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self.path.is_file():
                raise OnlineStoreError(
                    f"{self.where} does not exist: run features.store.apply and materialize first"
                )
            try:
                # mode=rw: never create an empty database where the store should be.
                conn = sqlite3.connect(
                    f"file:{self.path}?mode=rw",
                    uri=True,
                    isolation_level=None,
                    timeout=self.lock_timeout_s,
                    check_same_thread=False,
                )
                conn.execute(f'SELECT 1 FROM "{self.table}" LIMIT 1').fetchall()
                # In WAL mode NORMAL still never corrupts the file; a power cut may only lose the
                # last clicks, which the event log replays. FULL costs an fsync per click.
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.DatabaseError as e:
                raise self._error(e) from e
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _error(self, e: sqlite3.Error) -> OnlineStoreError:
        if "no such table" in str(e):
            return OnlineStoreError(
                f"{self.where} has no table {self.table!r}: run features.store.apply first"
            )
        if "locked" in str(e) or "busy" in str(e):
            return OnlineStoreError(
                f"{self.where} stayed locked by another writer for {self.lock_timeout_s}s ({e})"
            )
        return OnlineStoreError(f"{self.where} is unreadable ({e}): is it a Feast SQLite online store?")

    def read_many(self, user_ids: Sequence[str]) -> list[UserSequence]:
        conn = self._conn()
        keys = [self._user_key(u) for u in user_ids]
        found: dict[bytes, dict[str, bytes]] = {}
        key_list = list(set(keys))
        try:
            # Chunks stay under SQLite's bound-parameter limit.
            for start in range(0, len(key_list), 500):
                chunk = key_list[start : start + 500]
                rows = conn.execute(
                    f'SELECT entity_key, feature_name, value FROM "{self.table}" '
                    f"WHERE entity_key IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for key, name, value in rows:
                    found.setdefault(key, {})[name] = value
        except sqlite3.DatabaseError as e:
            raise self._error(e) from e
        return [_decode(u, found.get(k, {}), self.where) for u, k in zip(user_ids, keys, strict=True)]

    def append(self, user_id, item_id, event_type="rec_click", ts=None, before_commit=None) -> UserSequence:
        _check_event(user_id, item_id, event_type)
        conn = self._conn()
        key = self._user_key(user_id)
        try:
            # IMMEDIATE takes the database's write lock before the read: no other writer,
            # in this process or another, can slip in between our read and our write.
            conn.execute("BEGIN IMMEDIATE")
            try:
                # The event time under the write lock: appends land in event-time order.
                ts = ts or datetime.now(UTC)
                current = _decode(
                    user_id, dict(conn.execute(self._select_one, (key,)).fetchall()), self.where
                )
                new = _appended(current, item_id, event_type, ts, self.sequence_length)
                # Feast's SQLite store keeps event times as naive UTC epoch seconds.
                event_ts = int(new.last_event_ts.timestamp())
                now = int(time.time())
                conn.executemany(
                    self._upsert,
                    [
                        (
                            key,
                            name,
                            value.SerializeToString(),
                            extract_text_and_num(value, False)[0],
                            event_ts,
                            now,
                        )
                        for name, value in _encode(new).items()
                    ],
                )
                if before_commit is not None:
                    before_commit(ts)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as e:
            raise self._error(e) from e
        return new

    def is_empty(self) -> bool:
        try:
            return self._conn().execute(f'SELECT 1 FROM "{self.table}" LIMIT 1').fetchone() is None
        except sqlite3.DatabaseError as e:
            raise self._error(e) from e

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
