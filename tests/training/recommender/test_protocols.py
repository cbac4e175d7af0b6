"""Positives vs context steps, and the two evaluation protocols (leave-one-out, time split)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest

from pipelines.cli import main
from training.recommender.baselines import CoOccurrence, MostPopular
from training.recommender.data import (
    SequenceData,
    dataset_from_warehouse,
    leave_one_out,
    time_split,
    training_windows,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def events_table(conn, rows: list[tuple[str, int, str, str]]) -> None:
    """rows: (user, minutes after T0, item, event type); event ids follow the list."""
    events = pl.DataFrame(
        {
            "event_id": [f"e{i:05d}" for i in range(len(rows))],
            "ts": [T0 + timedelta(minutes=r[1]) for r in rows],
            "user_id": [r[0] for r in rows],
            "item_id": [r[2] for r in rows],
            "event_type": [r[3] for r in rows],
        }
    )
    conn.register("events_df", events.to_arrow())
    conn.execute("CREATE TABLE events AS SELECT * FROM events_df")


def test_context_steps_feed_the_history_and_positives_are_marked():
    conn = duckdb.connect()
    events_table(
        conn,
        [
            ("u1", 0, "A", "view"),
            ("u1", 1, "B", "purchase"),
            ("u1", 2, "C", "view"),
            ("u1", 3, "A", "view"),
            ("u1", 4, "A", "purchase"),  # view then purchase of A: one positive step, at minute 4
            ("u1", 5, "D", "rec_impression"),  # neither positive nor context
            ("u2", 0, "C", "add_to_cart"),  # not named at all: left out
        ],
    )
    data = dataset_from_warehouse(conn, positives=("purchase",), context=("view",), with_catalog=False)
    assert data.users == ["u1"]
    assert [data.items[i - 1] for i in data.sequences[0]] == ["A", "B", "C", "A"]
    assert data.positive[0].tolist() == [False, True, False, True]
    assert (data.times[0] - data.times[0][0]).tolist() == [0, 60, 120, 240]
    with pytest.raises(ValueError, match="both positives and context"):
        dataset_from_warehouse(conn, positives=("view",), context=("view",))
    with pytest.raises(ValueError, match="no refund events"):
        dataset_from_warehouse(conn, positives=("refund",), context=("view",))
    # Without context every step is a positive, and nothing needs telling apart.
    assert dataset_from_warehouse(conn, with_catalog=False).positive is None


def context_data() -> SequenceData:
    #          steps: 1 2 3 4 5 6 7 8 9
    positive = np.array([0, 1, 0, 1, 0, 0, 1, 0, 1], dtype=bool)
    return SequenceData(
        items=[f"i{i}" for i in range(1, 10)],
        users=["u"],
        sequences=[np.arange(1, 10)],
        times=[np.arange(9) * 60],
        positive=[positive],
    )


def test_leave_one_out_targets_the_last_positives_and_filters_only_seen_positives():
    split = leave_one_out(context_data())
    # Positives at steps 2, 4, 7, 9: 9 tests, 7 validates, training ends before 7.
    assert split.test.targets.tolist() == [9] and split.test.histories[0].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert split.test.seen[0].tolist() == [2, 4, 7]  # a viewed item may still be bought
    assert split.valid.targets.tolist() == [7] and split.valid.seen[0].tolist() == [2, 4]
    assert [s.tolist() for s in split.train] == [[1, 2, 3, 4, 5, 6]]
    inputs, targets = training_windows(split.train, max_len=6, positive=split.train_positive)
    assert inputs.tolist() == [[0, 1, 2, 3, 4, 5]]
    assert targets.tolist() == [[0, 2, 0, 4, 0, 0]]  # context steps are never targets


def test_time_split_trains_before_the_validation_period_and_tests_after():
    minutes = 24 * 60
    sequences, times = [], []
    # u0..u9 act every day for 10 days; u10 appears only on the last day.
    for u in range(10):
        sequences.append(np.array([(u + d) % 20 + 1 for d in range(10)]))
        times.append(np.arange(10) * minutes * 60)
    sequences.append(np.array([5, 6]))
    times.append(np.array([9 * minutes * 60, 9 * minutes * 60 + 60]))
    data = SequenceData(
        items=[f"i{i}" for i in range(1, 21)],
        users=[f"u{u}" for u in range(11)],
        sequences=sequences,
        times=times,
    )
    split = time_split(data, valid_fraction=0.2, test_fraction=0.2)
    # 102 positives: the last 20% fall on days 8 and 9, the 20% before on days 6 and 7.
    day = timedelta(days=1)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert datetime.fromisoformat(split.valid_from) == epoch + 6 * day
    assert datetime.fromisoformat(split.test_from) == epoch + 8 * day
    # Training holds only what happened before the validation period.
    assert [len(s) for s in split.train] == [6] * 10
    # Each old user's first step of day 8 is its test case, after its whole history.
    tested = dict(zip(split.test.users.tolist(), split.test.targets.tolist(), strict=True))
    assert tested[0] == sequences[0][8] and len(split.test.histories[0]) == 8
    assert split.valid.targets[0] == sequences[0][6]
    # u10's first step has no history: no case; its second step is one.
    assert tested[10] == 6 and split.test.histories[-1].tolist() == [5]
    assert split.test.seen is None  # no context steps: the whole history is seen
    with pytest.raises(ValueError, match="needs event times"):
        time_split(SequenceData(items=["a"], users=["u"], sequences=[np.array([1, 1, 1])]))


def test_baselines_count_only_positives_as_what_followed():
    train = [np.array([1, 2, 3, 2])]
    positive = [np.array([False, True, False, True])]
    popular = MostPopular(train, 3, positive)
    assert popular.counts.tolist() == [0, 0, 2, 0]
    cooc = CoOccurrence(train, 3, window=1, positive=positive)
    assert cooc.matrix.toarray()[1:, 1:].tolist() == [[0, 1, 0], [0, 0, 0], [0, 1, 0]]


def test_train_from_the_warehouse_reports_both_protocols(settings, tmp_path, capsys):
    """``shopml train recommender --warehouse`` trains one model per protocol and reports both."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        start = int(rng.integers(0, 20))
        for step in range(12):
            item = f"i{(start + step) % 20}"
            rows.append((f"u{u}", step * 600 + u, item, "view"))
            if step % 2:
                rows.append((f"u{u}", step * 600 + u + 1, f"i{(start + step + 1) % 20}", "purchase"))
    path = tmp_path / "warehouse.duckdb"
    conn = duckdb.connect(str(path))
    events_table(conn, rows)
    conn.close()
    code = main(
        [
            "train",
            "recommender",
            "--warehouse",
            str(path),
            "--profile",
            "smoke",
            "--no-save",
            "--positives",
            "purchase",
            "--context",
            "view",
        ]
    )
    assert code == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (
        metrics["protocol"].startswith("leave-one-out") and "seen positives filtered" in metrics["protocol"]
    )
    timed = metrics["time"]
    assert timed["protocol"].startswith("global time split") and timed["periods"]["valid_from"]
    assert set(timed["baselines"]) == {"most_popular", "cooccurrence", "ease"} and timed["cases"] > 0
    assert timed["split"] != metrics["split"]
