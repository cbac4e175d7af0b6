"""Every SQL example in the README runs on a warehouse built from the tiny shop."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from dagster import DagsterInstance
from testdata import REPO

from data_contracts import warehouse
from data_contracts.landing_log import LandingLog
from pipelines.commands.ingest import ingest_landed, run_job


def readme_queries() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    return [q.strip() for block in blocks for q in block.split(";") if "SELECT" in q]


def test_every_readme_query_runs_and_returns_rows(settings, tiny_shop):
    now = datetime(2026, 1, 6, 12, tzinfo=timezone.utc)
    log = LandingLog(settings)
    log.write(
        "served",
        {"rec_id": "r1", "ts": now, "model_version": "v1", "items": ["i000001"], "scores": [1.0]},
        now=now,
    )
    log.write(
        "replies",
        {
            "reply_id": "p1",
            "ts": now,
            "session_id": "s",
            "message": "hi",
            "reply": "hello",
            "handover": False,
        },
        now=now,
    )
    instance = DagsterInstance.ephemeral()
    ingest_landed(settings, instance=instance)
    run_job(settings, "feedback_loop_job", instance=instance)
    queries = readme_queries()
    assert len(queries) >= 7
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    try:
        for query in queries:
            assert conn.execute(query).fetchall(), f"no rows from README query:\n{query}"
    finally:
        conn.close()
