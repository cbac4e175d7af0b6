from __future__ import annotations

import csv
import json

import numpy as np
import polars as pl
import pytest

from training.support.corpus import (
    SAMPLE_DIR,
    CorpusError,
    build_corpus,
    group_split,
    leaked_test_rows,
    near_duplicate_groups,
    read_abcd,
    read_bitext,
    read_feedback_files,
)

BITEXT_SAMPLE = SAMPLE_DIR / "bitext" / "bitext_sample.csv"
ABCD_SAMPLE = SAMPLE_DIR / "abcd"
FIELDS = ["instruction", "response", "intent", "category"]


def write_bitext(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows([dict(zip(FIELDS, r, strict=True)) for r in rows])
    return path


def test_read_bitext_accounts_for_every_row(tmp_path):
    path = write_bitext(
        tmp_path / "b.csv",
        [
            ("cancel my order", "Sure, {{Order Number}}", "cancel_order", "ORDER"),
            ("Cancel  my order ", "Another answer", "cancel_order", "ORDER"),  # duplicate question
            ("   ", "answer", "cancel_order", "ORDER"),  # empty question
            ("track it", "", "track_order", "ORDER"),  # empty answer
            ("refund?", "Refunds take 5 days", "get_refund", "refund"),
        ],
    )
    qa, stats = read_bitext(path)
    assert stats.rows_in == 5
    assert (stats.rows_clean, stats.rows_duplicate, stats.rows_rejected) == (2, 1, 2)
    assert stats.rows_in == stats.rows_clean + stats.rows_duplicate + stats.rows_rejected
    assert qa["category"].to_list() == ["ORDER", "REFUND"]
    assert qa["qa_id"].n_unique() == 2


def test_read_bitext_rejects_missing_columns_and_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nq,a\n")
    with pytest.raises(CorpusError, match="missing columns"):
        read_bitext(bad)
    with pytest.raises(CorpusError, match="not found"):
        read_bitext(tmp_path / "absent.csv")


def test_committed_samples_read():
    qa, stats = read_bitext(BITEXT_SAMPLE)
    assert stats.rows_in == 270 and qa["intent"].n_unique() == 27
    articles = read_abcd(ABCD_SAMPLE)
    assert articles.height == 55
    assert articles["article_id"].n_unique() == 55
    assert articles.filter(articles["body"].str.contains("Required actions")).height >= 30


def test_read_abcd_errors(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        read_abcd(tmp_path)
    (tmp_path / "guidelines.json").write_text("{not json")
    with pytest.raises(CorpusError, match="malformed JSON"):
        read_abcd(tmp_path)


GOOD = {"reply_id": "r1", "rating": -1, "reason": "wrong", "context": "where is my order", "reply": "Hello"}


def test_feedback_files_keep_last_rating_and_report_bad_lines(tmp_path):
    path = tmp_path / "feedback.jsonl"
    rows = [GOOD, {**GOOD, "rating": 1}, {**GOOD, "reply_id": "r2", "rating": 7}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    frame, rejected = read_feedback_files([path])
    assert frame.height == 1 and frame["rating"].to_list() == [1]
    assert len(rejected) == 2
    assert any("malformed JSON" in r["reason"] for r in rejected)
    with pytest.raises(CorpusError):
        read_feedback_files([tmp_path / "absent.jsonl"])


def unit(rows):
    x = np.asarray(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_near_duplicate_groups_are_connected_components():
    e = unit([[1, 0, 0], [0.99, 0.1, 0], [0.97, 0.2, 0], [0, 1, 0], [0, 0, 1]])
    groups = near_duplicate_groups(e, 0.99)
    # 0~1 and 1~2 are near-copies, so 0, 1, 2 form one group although 0 and 2 are further apart.
    assert groups[0] == groups[1] == groups[2]
    assert len({groups[0], groups[3], groups[4]}) == 3


def test_group_split_keeps_groups_together_and_reaches_the_fraction():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(50), 4)  # 50 groups of 4 near-copies
    strata = ["a" if g % 2 else "b" for g in groups]
    is_test = group_split(groups, strata, 0.2, seed=0)
    for g in range(50):
        assert len(set(is_test[groups == g])) == 1
    assert 0.15 <= is_test.mean() <= 0.25
    # each intent is represented on the test side
    assert {s for s, t in zip(strata, is_test, strict=True) if t} == {"a", "b"}
    assert not np.array_equal(is_test, group_split(groups, strata, 0.2, seed=int(rng.integers(1, 99))))


def test_leaked_test_rows_counts_near_copies():
    e = unit([[1, 0], [0.999, 0.01], [0, 1], [0.1, 1]])
    assert leaked_test_rows(e, np.array([False, True, False, False]), 0.99) == 1
    assert leaked_test_rows(e, np.array([False, False, True, True]), 0.99) == 0


def bag_of_words(texts):
    """A deterministic embedding: questions differing only in a number are near-copies."""
    vocab = {}
    rows = []
    for text in texts:
        words = [w for w in text.lower().split() if not w.isdigit()]
        v = np.zeros(64, dtype=np.float32)
        for w in words:
            v[vocab.setdefault(w, len(vocab)) % 64] += 1
        rows.append(v / max(np.linalg.norm(v), 1e-9))
    return np.stack(rows)


def test_build_corpus_split_is_leak_free_where_a_random_split_leaks(tmp_path):
    rows = []
    for intent in ("cancel_order", "track_order", "get_refund", "check_invoice"):
        for variant in range(10):
            for number in range(5):  # five near-copies of each question
                rows.append(
                    (f"{intent} please variant{variant} {1000 + number}", f"answer {intent}", intent, "ORDER")
                )
    corpus = build_corpus(bag_of_words, write_bitext(tmp_path / "b.csv", rows), ABCD_SAMPLE, threshold=0.95)
    stats = corpus.stats
    assert stats["rows_clean"] == 200
    assert stats["near_duplicate_groups"] == 40
    assert stats["leaked_test_rows"] == 0
    assert stats["leaked_test_rows_random_split"] > stats["test_rows"] / 2
    assert corpus.qa.group_by("group").agg(pl.col("split").n_unique().alias("sides"))["sides"].max() == 1
    assert set(corpus.test()["intent"]) == {"cancel_order", "track_order", "get_refund", "check_invoice"}
    assert stats["leak_by_threshold"]["0.95"]["leak_free_split"] == 0
    # Half of the held-out groups validate, the other half only measure: whole groups, no overlap.
    validation, test = corpus.validation(), corpus.test()
    assert validation.height == stats["validation_rows"] > 0 and test.height == stats["test_rows"] > 0
    assert not set(validation["group"]) & set(test["group"])
    assert stats["train_rows"] + stats["validation_rows"] + stats["test_rows"] == 200


def test_build_corpus_keeps_every_held_out_row_for_measuring_when_it_cannot_halve(tmp_path):
    rows = [(f"cancel variant{v} {n}", "a", "cancel_order", "ORDER") for v in range(5) for n in range(2)]
    corpus = build_corpus(bag_of_words, write_bitext(tmp_path / "b.csv", rows), ABCD_SAMPLE, threshold=0.95)
    assert corpus.stats["test_rows"] == corpus.test().height == 2  # one group of two held out
    assert corpus.validation().height == 0


def test_group_split_keeps_a_giant_cluster_in_training():
    groups = np.array([0] * 50 + list(range(1, 11)))
    is_test = group_split(groups, ["a"] * 60, 0.2, seed=0)
    assert not is_test[:50].any() and is_test[50:].sum() > 0


def test_build_corpus_refuses_a_one_sided_split(tmp_path):
    rows = [(f"same question {i}", "a", "i", "C") for i in range(10)]
    with pytest.raises(CorpusError, match="one side empty"):
        build_corpus(bag_of_words, write_bitext(tmp_path / "b.csv", rows), ABCD_SAMPLE, threshold=0.9)


def test_build_corpus_needs_rows(tmp_path):
    with pytest.raises(CorpusError, match="fewer than two"):
        build_corpus(bag_of_words, write_bitext(tmp_path / "b.csv", [("q", "a", "i", "C")]), ABCD_SAMPLE)
