"""Service logs in the landing folder become warehouse tables joined to events."""

from __future__ import annotations

from datetime import datetime, timezone

from dagster import DagsterInstance

from data_contracts import warehouse
from data_contracts.landing_log import LandingLog
from pipelines.commands.ingest import ingest_landed, run_job
from pipelines.ingest import logs

NOW = datetime(2026, 1, 6, 12, tzinfo=timezone.utc)


def test_logs_are_typed_deduplicated_and_bad_lines_quarantined(settings):
    log = LandingLog(settings)
    served = {
        "rec_id": "r1",
        "ts": NOW,
        "user_id": "u1",
        "model_version": "v1",
        "items": ["i1", "i2"],
        "scores": [0.9, 0.5],
        "fallback": None,
    }
    log.write("served", served, now=NOW)
    log.write("served", served, now=NOW)  # a repeated line
    log.write(
        "feedback",
        {"feedback_id": "f1", "target_id": "r1", "target_kind": "recommendation", "rating": 1, "ts": NOW},
        now=NOW,
    )
    log.write(
        "feedback",
        {"feedback_id": "f2", "target_id": "r1", "target_kind": "recommendation", "rating": 5, "ts": NOW},
        now=NOW,
    )
    path = log.path("feedback", NOW.date())
    with open(path, "a") as handle:
        handle.write('{"feedback_id": "f3", "rating":\n')
    read = logs.read_log(settings.landing_dir, "served")
    assert read.clean["items"].to_list() == [["i1", "i2"]]
    assert read.duplicates == 1 and read.rows_in == 2
    fb = logs.read_log(settings.landing_dir, "feedback")
    assert fb.clean["feedback_id"].to_list() == ["f1"]
    assert sorted(fb.quarantined["rule"].to_list()) == ["rating_not_plus_or_minus_one", "rejected_by_reader"]


def test_click_through_rate_per_model_version_joins_served_lists_to_clicks(settings, tiny_shop):
    log = LandingLog(settings)
    for rec_id, version in (("r1", "v1"), ("r2", "v1"), ("r3", "v2")):
        log.write(
            "served",
            {
                "rec_id": rec_id,
                "ts": NOW,
                "user_id": "u000001",
                "model_version": version,
                "items": ["i000001"],
                "scores": [1.0],
            },
            now=NOW,
        )
    log.write(
        "events",
        {
            "event_id": "click-1",
            "ts": NOW,
            "user_id": "u000001",
            "item_id": "i000001",
            "event_type": "rec_click",
            "rec_id": "r1",
            "source": "serving",
        },
        now=NOW,
    )
    instance = DagsterInstance.ephemeral()
    ingest_landed(settings, instance=instance)
    run_job(settings, "feedback_loop_job", instance=instance)
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    ctr = dict(
        (v, c) for v, _, _, c in conn.execute("SELECT * FROM ctr_by_model_version ORDER BY 1").fetchall()
    )
    names = {name for name, _, _ in warehouse.summary(conn)}
    conn.close()
    assert ctr == {"v1": 0.5, "v2": 0.0}
    assert {"served_recommendations", "support_replies", "feedback", "quarantine_feedback"} <= names


def test_reply_feedback_reaches_the_support_training_data(settings):
    from pipelines.resources import WarehouseResource
    from pipelines.support import feedback_from_warehouse
    from training.support.corpus import read_feedback_files

    log = LandingLog(settings)
    log.write(
        "replies",
        {
            "reply_id": "p1",
            "ts": NOW,
            "session_id": "s1",
            "message": "Where is my refund?",
            "reply": "Refunds take five days.",
            "handover": False,
        },
        now=NOW,
    )
    log.write(
        "feedback",
        {
            "feedback_id": "f1",
            "target_id": "p1",
            "target_kind": "reply",
            "rating": -1,
            "reason": "wrong",
            "ts": NOW,
        },
        now=NOW,
    )
    run_job(settings, "feedback_loop_job", instance=DagsterInstance.ephemeral())
    path = feedback_from_warehouse(
        WarehouseResource(database=str(settings.warehouse_path)), settings.data_dir / "fb.jsonl"
    )
    frame, rejected = read_feedback_files([path])
    assert rejected == []
    assert frame.select("reply_id", "rating", "context").rows() == [("p1", -1, "Where is my refund?")]


def test_search_click_through_rate_joins_served_searches_to_clicks(settings, tiny_shop):
    log = LandingLog(settings)
    for search_id, personalised in (("s1", True), ("s2", True), ("s3", False)):
        log.write(
            "searches",
            {
                "search_id": search_id,
                "ts": NOW,
                "user_id": "u000001",
                "query": "lamp",
                "index_version": 1,
                "personalised": personalised,
                "items": ["i000001", "i000002"],
                "scores": [0.03, 0.02],
            },
            now=NOW,
        )
    click = {"ts": NOW, "user_id": "u000001", "item_id": "i000002", "event_type": "rec_click", "rec_id": "s1"}
    log.write("events", {"event_id": "click-s1", "source": "serving", **click}, now=NOW)
    instance = DagsterInstance.ephemeral()
    ingest_landed(settings, instance=instance)
    run_job(settings, "feedback_loop_job", instance=instance)
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    rows = conn.execute("SELECT personalised, searches, clicked, ctr FROM search_ctr").fetchall()
    served = conn.execute("SELECT search_id, items FROM served_searches ORDER BY 1").fetchall()
    conn.close()
    assert sorted(rows) == [(False, 1, 0, 0.0), (True, 2, 1, 0.5)]
    assert served[0] == ("s1", ["i000001", "i000002"]) and len(served) == 3
