"""The row of ``user_recent_items`` as Feast's online stores keep it: entity key and values.

Feast's serialised entity key of a user and the protobuf values of the three features,
encoded and decoded here for every backend, so both read and write the very bytes Feast
itself writes at materialisation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime

from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import StringList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Array, String, UnixTimestamp
from google.protobuf.message import DecodeError

from data_contracts.schemas import ITEM_EVENT_TYPES
from features.views import LAST_EVENT_TS, RECENT_EVENT_TYPES, RECENT_ITEM_IDS

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
