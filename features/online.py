"""Online sequences for serving: read one or many users, append a click safely.

Feast owns the schema, the registry and materialisation; this module reads and writes the
very rows Feast's SQLite and Redis online stores keep for ``user_recent_items`` (same table
or key, same entity-key serialisation, same protobuf values, checked against the registry
when opened), because Feast's generic path is too slow for an in-process lookup and its
push overwrites the whole row:

- reading through ``FeatureStore.get_online_features`` costs registry lookups and pandas or
  dict plumbing per call; here one SQL query or one Redis pipeline does it;
- ``FeatureStore.push`` replaces the row, so two clicks of one user arriving together would
  each read the old sequence and the second write would drop the first click. An append
  here is a read-modify-write made atomic by the store itself: ``BEGIN IMMEDIATE`` on SQLite
  (one writer at a time across threads and processes) and ``WATCH``/``MULTI`` on Redis
  (the transaction fails and is retried if the user's key changed since it was read).
"""

from __future__ import annotations

import sqlite3
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import redis
from feast import FeatureStore
from feast.errors import FeatureViewNotFoundException
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import (
    _mmh3,
    compute_table_id,
    compute_versioned_name,
    extract_text_and_num,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import StringList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Array, String, UnixTimestamp
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from data_contracts.schemas import ITEM_EVENT_TYPES
from features.config import FeatureStoreConfig
from features.views import LAST_EVENT_TS, RECENT_EVENT_TYPES, RECENT_ITEM_IDS, USER_RECENT_ITEMS

EXPECTED_SCHEMA = {
    RECENT_ITEM_IDS: Array(String),
    RECENT_EVENT_TYPES: Array(String),
    LAST_EVENT_TS: UnixTimestamp,
}


class OnlineStoreError(RuntimeError):
    """The online store is missing, unreachable, corrupt or not set up by ``apply``."""


@dataclass(slots=True)
class UserSequence:
    """A user's recent items, newest last; empty for a user the store does not know."""

    user_id: str
    item_ids: list[str] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    last_event_ts: datetime | None = None

    def __len__(self) -> int:
        return len(self.item_ids)


class _UserKey:
    """Feast's serialised entity key of a user, built without a protobuf per call.

    The layout (a fixed prefix, then the id's length and bytes) is derived from Feast's own
    ``serialize_entity_key`` at start-up and checked against it, so a change of Feast's
    encoding fails here instead of silently missing every row.
    """

    def __init__(self, version: int):
        self.version = version
        probe = self._feast("probe")
        self.prefix = probe[: -len(b"probe") - 4]
        for user_id in ("u", "user-ü-42"):
            if self(user_id) != self._feast(user_id):
                raise OnlineStoreError(f"Feast entity key layout v{version} changed; update features.online")

    def _feast(self, user_id: str) -> bytes:
        proto = EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto(string_val=user_id)])
        return serialize_entity_key(proto, entity_key_serialization_version=self.version)

    def __call__(self, user_id: str) -> bytes:
        raw = user_id.encode()
        return self.prefix + struct.pack("<I", len(raw)) + raw


def _appended(
    current: UserSequence, item_id: str, event_type: str, ts: datetime, length: int
) -> UserSequence:
    last = ts if current.last_event_ts is None else max(current.last_event_ts, ts)
    return UserSequence(
        current.user_id,
        (current.item_ids + [item_id])[-length:],
        (current.event_types + [event_type])[-length:],
        last,
    )


def _encode(sequence: UserSequence) -> dict[str, ValueProto]:
    ts = sequence.last_event_ts
    return {
        RECENT_ITEM_IDS: ValueProto(string_list_val=StringList(val=sequence.item_ids)),
        RECENT_EVENT_TYPES: ValueProto(string_list_val=StringList(val=sequence.event_types)),
        # Feast stores UnixTimestamp features as whole seconds.
        LAST_EVENT_TS: ValueProto(unix_timestamp_val=int(ts.timestamp())) if ts else ValueProto(),
    }


def _decode(user_id: str, values: dict[str, bytes | None], where: str) -> UserSequence:
    if all(values.get(name) is None for name in EXPECTED_SCHEMA):
        return UserSequence(user_id)
    try:
        ids = ValueProto.FromString(values[RECENT_ITEM_IDS] or b"").string_list_val.val
        types = ValueProto.FromString(values[RECENT_EVENT_TYPES] or b"").string_list_val.val
        ts_value = ValueProto.FromString(values[LAST_EVENT_TS] or b"")
    except DecodeError as e:
        raise OnlineStoreError(f"{where}: the row of user {user_id!r} is corrupt ({e})") from e
    if len(ids) != len(types):
        raise OnlineStoreError(
            f"{where}: the row of user {user_id!r} is corrupt ({len(ids)} items, {len(types)} event types)"
        )
    last = (
        datetime.fromtimestamp(ts_value.unix_timestamp_val, UTC)
        if ts_value.HasField("unix_timestamp_val")
        else None
    )
    return UserSequence(user_id, list(ids), list(types), last)


def _check_event(user_id: str, item_id: str, event_type: str) -> None:
    if not user_id:
        raise ValueError("user_id must be a non-empty string")
    if not item_id:
        raise ValueError("item_id must be a non-empty string")
    if event_type not in ITEM_EVENT_TYPES:
        raise ValueError(f"event_type must be one of {ITEM_EVENT_TYPES}, not {event_type!r}")


class OnlineSequences(ABC):
    """What serving calls. Open once per process with ``open_sequences``."""

    def __init__(self, project: str, sequence_length: int, key_version: int, where: str):
        self.project = project
        self.sequence_length = sequence_length
        self.key_version = key_version
        self._user_key = _UserKey(key_version)
        # Names the store and its path or URL in every error message.
        self.where = where

    def read(self, user_id: str) -> UserSequence:
        """One user's sequence (empty for an unknown user)."""
        return self.read_many([user_id])[0]

    @abstractmethod
    def read_many(self, user_ids: Sequence[str]) -> list[UserSequence]:
        """Many users in one round trip, in the order asked."""

    @abstractmethod
    def append(
        self, user_id: str, item_id: str, event_type: str = "rec_click", ts: datetime | None = None
    ) -> UserSequence:
        """Append one event to the user's online sequence (trimmed to N); returns the new one.

        Safe under concurrent appends for the same user, from threads or processes: every
        append lands, in the order the store serialised them.
        """

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> OnlineSequences:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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

    def append(self, user_id, item_id, event_type="rec_click", ts=None) -> UserSequence:
        _check_event(user_id, item_id, event_type)
        ts = ts or datetime.now(UTC)
        conn = self._conn()
        key = self._user_key(user_id)
        try:
            # IMMEDIATE takes the database's write lock before the read: no other writer,
            # in this process or another, can slip in between our read and our write.
            conn.execute("BEGIN IMMEDIATE")
            try:
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
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as e:
            raise self._error(e) from e
        return new

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


class RedisSequences(OnlineSequences):
    """The hashes Feast's Redis online store keeps for ``user_recent_items``."""

    def __init__(
        self,
        client: redis.Redis,
        where: str,
        view: str,
        project: str,
        sequence_length: int,
        key_version: int,
        key_ttl_seconds: int | None = None,
        lock_timeout_s: float = 10.0,
    ):
        super().__init__(project, sequence_length, key_version, where)
        self.client = client
        self.key_ttl_seconds = key_ttl_seconds
        self.lock_timeout_s = lock_timeout_s
        self._suffix = project.encode()
        self._names = list(EXPECTED_SCHEMA)
        self._fields = [_mmh3(f"{view}:{name}") for name in self._names]
        self._ts_field = f"_ts:{view}".encode()

    def _key(self, user_id: str) -> bytes:
        return self._user_key(user_id) + self._suffix

    def read_many(self, user_ids: Sequence[str]) -> list[UserSequence]:
        try:
            if len(user_ids) == 1:
                replies = [self.client.hmget(self._key(user_ids[0]), self._fields)]
            else:
                with self.client.pipeline(transaction=False) as pipe:
                    for user_id in user_ids:
                        pipe.hmget(self._key(user_id), self._fields)
                    replies = pipe.execute()
        except redis.RedisError as e:
            raise OnlineStoreError(f"{self.where} is unreachable or failing ({e})") from e
        return [
            _decode(u, dict(zip(self._names, reply, strict=True)), self.where)
            for u, reply in zip(user_ids, replies, strict=True)
        ]

    def append(self, user_id, item_id, event_type="rec_click", ts=None) -> UserSequence:
        _check_event(user_id, item_id, event_type)
        ts = ts or datetime.now(UTC)
        key = self._key(user_id)
        deadline = time.monotonic() + self.lock_timeout_s
        try:
            with self.client.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        # WATCH: EXEC fails if anyone wrote the key after this point.
                        pipe.watch(key)
                        reply = pipe.hmget(key, self._fields)
                        current = _decode(user_id, dict(zip(self._names, reply, strict=True)), self.where)
                        new = _appended(current, item_id, event_type, ts, self.sequence_length)
                        row_ts = Timestamp()
                        row_ts.FromDatetime(new.last_event_ts)
                        mapping = {self._ts_field: row_ts.SerializeToString()}
                        for f, value in zip(self._fields, _encode(new).values(), strict=True):
                            mapping[f] = value.SerializeToString()
                        pipe.multi()
                        pipe.hset(key, mapping=mapping)
                        if self.key_ttl_seconds:
                            pipe.expire(key, self.key_ttl_seconds)
                        pipe.execute()
                        return new
                    except redis.WatchError:
                        if time.monotonic() > deadline:
                            raise OnlineStoreError(
                                f"{self.where}: gave up appending for user {user_id!r} after "
                                f"{self.lock_timeout_s}s of concurrent writes"
                            ) from None
        except redis.RedisError as e:
            raise OnlineStoreError(f"{self.where} is unreachable or failing ({e})") from e

    def close(self) -> None:
        self.client.close()


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def open_sequences(store: FeatureStore, config: FeatureStoreConfig) -> OnlineSequences:
    """The online sequences of the configured store, checked against Feast's registry."""
    try:
        view = store.get_feature_view(USER_RECENT_ITEMS)
    except FeatureViewNotFoundException as e:
        raise OnlineStoreError(
            f"feature view {USER_RECENT_ITEMS!r} is not in the registry of project "
            f"{store.project!r}: run features.store.apply first"
        ) from e
    schema = {f.name: f.dtype for f in view.features}
    if schema != EXPECTED_SCHEMA:
        raise OnlineStoreError(
            f"registry schema of {USER_RECENT_ITEMS!r} is {schema}, this code reads {EXPECTED_SCHEMA}"
        )
    repo = store.config
    versioning = repo.registry.enable_online_feature_view_versioning
    online = repo.online_store
    if online.type == "sqlite":
        path = Path(online.path)
        if not path.is_absolute():
            path = Path(repo.repo_path) / path
        return SqliteSequences(
            path,
            compute_table_id(repo.project, view, versioning),
            repo.project,
            config.sequence_length,
            repo.entity_key_serialization_version,
            config.lock_timeout_s,
        )
    if online.type == "redis":
        client = redis.Redis.from_url(config.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return RedisSequences(
            client,
            f"Redis online store {_redacted(config.redis_url)}",
            compute_versioned_name(view, versioning),
            repo.project,
            config.sequence_length,
            repo.entity_key_serialization_version,
            online.key_ttl_seconds,
            config.lock_timeout_s,
        )
    raise OnlineStoreError(f"online store type {online.type!r} is not supported (sqlite or redis)")
