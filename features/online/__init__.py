"""Online sequences for serving: read one or many users, append a click safely.

The row codec is in ``codec``, the interface in ``base``, one backend per module
(``sqlite_backend``, ``redis_backend``); ``open_sequences`` picks the configured one.

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
  (one writer at a time across threads and processes) and, on Redis, a per-user lock with
  ``WATCH``/``MULTI`` inside it (retried if another writer changed the key since it was read).
  The event time is taken under that lock, so the sequence is in event-time order, the
  order in which the warehouse builds ``user_sequences`` from the same events.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import redis
from feast import FeatureStore
from feast.errors import FeatureViewNotFoundException
from feast.infra.online_stores.helpers import compute_table_id, compute_versioned_name

from features.config import FeatureStoreConfig
from features.online.base import OnlineSequences
from features.online.codec import EXPECTED_SCHEMA, OnlineStoreError, UserSequence
from features.online.redis_backend import RedisSequences
from features.online.sqlite_backend import SqliteSequences
from features.views import USER_RECENT_ITEMS

__all__ = [
    "EXPECTED_SCHEMA",
    "OnlineSequences",
    "OnlineStoreError",
    "RedisSequences",
    "SqliteSequences",
    "UserSequence",
    "open_sequences",
]


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
