"""The Redis backend: the hashes Feast's Redis online store keeps for ``user_recent_items``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import redis
from feast.infra.online_stores.helpers import _mmh3
from google.protobuf.timestamp_pb2 import Timestamp

from features.online.base import OnlineSequences
from features.online.codec import (
    EXPECTED_SCHEMA,
    OnlineStoreError,
    UserSequence,
    _appended,
    _check_event,
    _decode,
    _encode,
)

# How often a waiting append asks for the user's lock again (redis-py's default is 0.1 s).
LOCK_POLL_S = 0.002


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

    def append(self, user_id, item_id, event_type="rec_click", ts=None, before_commit=None) -> UserSequence:
        _check_event(user_id, item_id, event_type)
        key = self._key(user_id)
        # Appends of one user take turns under a lock (it expires if its holder dies), so the
        # event time taken under it orders them; WATCH still guards against other writers
        # (a materialisation), whose conflict is retried with the same time.
        lock = self.client.lock(
            b"shopml:append-lock:" + key + b":lock",  # ends unlike a row key: is_empty skips it
            timeout=self.lock_timeout_s,
            sleep=LOCK_POLL_S,
            blocking_timeout=self.lock_timeout_s,
        )
        try:
            if not lock.acquire():
                raise OnlineStoreError(
                    f"{self.where}: the append lock of user {user_id!r} stayed taken for {self.lock_timeout_s}s"
                )
            try:
                return self._append_locked(user_id, key, item_id, event_type, ts, before_commit)
            finally:
                with contextlib.suppress(redis.exceptions.LockError):
                    lock.release()
        except redis.RedisError as e:
            raise OnlineStoreError(f"{self.where} is unreachable or failing ({e})") from e

    def _append_locked(self, user_id, key, item_id, event_type, ts, before_commit) -> UserSequence:
        ts = ts or datetime.now(UTC)
        deadline = time.monotonic() + self.lock_timeout_s
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
                    if before_commit is not None:
                        before_commit(ts)
                        before_commit = None  # once, even if EXEC must be retried
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

    def is_empty(self) -> bool:
        # Feast's keys end with the project name; other data may share the database.
        try:
            for _ in self.client.scan_iter(match=b"*" + self._suffix, count=1000):
                return False
        except redis.RedisError as e:
            raise OnlineStoreError(f"{self.where} is unreachable or failing ({e})") from e
        return True

    def close(self) -> None:
        self.client.close()
