"""What serving calls: the interface every online-sequence backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime

from features.online.codec import UserSequence, _UserKey


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
        self,
        user_id: str,
        item_id: str,
        event_type: str = "rec_click",
        ts: datetime | None = None,
        before_commit: Callable[[datetime], None] | None = None,
    ) -> UserSequence:
        """Append one event to the user's online sequence (trimmed to N); returns the new one.

        Safe under concurrent appends for the same user, from threads or processes: every
        append lands, in the order the store serialised them. Without ``ts`` the event time
        is taken while the user's row is locked, so that order is also the order of event
        times, which is how the warehouse orders ``user_sequences``. ``before_commit(ts)``
        runs under the same lock, once, before the write is committed (serving writes the
        event log there, with that time); if it raises, nothing is written.
        """

    @abstractmethod
    def is_empty(self) -> bool:
        """True when the store holds no user's row at all (lost, flushed or never loaded)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> OnlineSequences:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
