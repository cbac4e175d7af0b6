from __future__ import annotations

import json
import threading
from datetime import datetime, timezone

import pytest

from data_contracts import adapters
from data_contracts.landing_log import LandingLog


def test_served_events_land_where_the_ingest_reads_them(settings):
    log = LandingLog(settings)
    now = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
    path = log.write(
        "events",
        {
            "event_id": "s1",
            "ts": now,
            "user_id": "u1",
            "item_id": "i1",
            "event_type": "rec_click",
            "rec_id": "r1",
            "source": "serving",
        },
        now=now,
    )
    assert path.parent == settings.events_landing / "2026-03-01"
    events = adapters.adapt_file(path).events
    assert events.row(0, named=True)["rec_id"] == "r1"
    assert events.row(0, named=True)["ts"] == now


def test_concurrent_writers_never_interleave_lines(settings):
    log = LandingLog(settings)
    now = datetime(2026, 3, 1, tzinfo=timezone.utc)

    def write_many(worker: int):
        for i in range(200):
            log.write("feedback", {"feedback_id": f"{worker}-{i}", "reason": "x" * 500}, now=now)

    threads = [threading.Thread(target=write_many, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = log.path("feedback", now.date()).read_text().splitlines()
    assert len(lines) == 1600
    assert len({json.loads(line)["feedback_id"] for line in lines}) == 1600


def test_unknown_kind_is_refused(settings):
    with pytest.raises(ValueError, match="unknown landing log kind"):
        LandingLog(settings).write("gossip", {})


def test_a_folder_removed_while_serving_is_made_again(settings):
    import shutil

    log = LandingLog(settings)
    now = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
    first = log.write("served", {"rec_id": "a"}, now=now)
    shutil.rmtree(first.parent)  # e.g. an operator clearing a day that was ingested
    second = log.write("served", {"rec_id": "b"}, now=now)
    assert second == first
    assert [json.loads(line)["rec_id"] for line in second.read_text().splitlines()] == ["b"]
