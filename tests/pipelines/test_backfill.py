"""A backfill of a range of landing days, launched as the Dagster UI launches it.

The UI's "Materialize" dialog sends GraphQL ``launchPartitionBackfill`` with the asset keys
and the partition keys of the chosen range; the backfill daemon then submits the runs. Both
are run here against a code server of ``pipelines.definitions``, as ``dagster dev`` runs them.
"""

from __future__ import annotations

import logging

import pytest
from dagster import AssetKey, instance_for_test
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster_graphql.test.utils import execute_dagster_graphql
from testdata import REPO

from data_contracts import warehouse
from pipelines.commands.ingest import RANGE_END_TAG, RANGE_START_TAG, ingest_landed

pytestmark = pytest.mark.slow  # starts a code server process (about 20 s here)

LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
# Runs start at once, in this process (dagster dev queues them for its run queue daemon).
IN_PROCESS = {
    "run_launcher": {
        "module": "dagster._core.launcher.sync_in_memory_run_launcher",
        "class": "SyncInMemoryRunLauncher",
    },
    "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
}


def test_a_range_of_landing_days_backfills_in_one_run_from_the_ui(settings, tiny_shop):
    with instance_for_test(overrides=IN_PROCESS) as instance:
        ingest_landed(settings, ["2026-01-05"], instance=instance)  # the catalog, and every day a partition
        assert instance.get_dynamic_partitions("landing_days") == ["2026-01-05", "2026-01-06", "2026-01-07"]
        target = ModuleTarget(
            module_name="pipelines.definitions",
            attribute="defs",
            working_directory=str(REPO),
            location_name="pipelines",
        )
        with create_test_daemon_workspace_context(target, instance) as workspace:
            params = {
                "assetSelection": [{"path": [k]} for k in ("raw_events", "events", "quarantine_events")],
                "partitionNames": ["2026-01-06", "2026-01-07"],
                "fromFailure": False,
            }
            launched = execute_dagster_graphql(workspace.create_request_context(), LAUNCH, {"params": params})
            assert launched.data["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", (
                launched.data
            )
            for _ in range(4):  # the daemon's ticks: submit the run, then see it finished
                list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
        [backfill] = instance.get_backfills()
        assert backfill.status.value == "COMPLETED_SUCCESS"
        runs = [r for r in instance.get_runs() if r.tags.get("dagster/backfill") == backfill.backfill_id]
        assert len(runs) == 1 and runs[0].status.value == "SUCCESS"
        assert (runs[0].tags[RANGE_START_TAG], runs[0].tags[RANGE_END_TAG]) == ("2026-01-06", "2026-01-07")
        assert instance.get_materialized_partitions(AssetKey("events")) == {
            "2026-01-05",
            "2026-01-06",
            "2026-01-07",
        }
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    days = conn.execute("SELECT DISTINCT batch_date::VARCHAR FROM events ORDER BY 1").fetchall()
    conn.close()
    assert days == [("2026-01-05",), ("2026-01-06",), ("2026-01-07",)]
