from __future__ import annotations

import numpy as np
import pytest

from training.support.metrics import (
    cosine_rows,
    lcs_length,
    percentiles,
    r_at_1,
    recall_at_k,
    rouge_l,
    rouge_l_f1,
)


def test_lcs_length_hand_computed():
    assert lcs_length(list("ABCBDAB"), list("BDCABA")) == 4
    assert lcs_length([], ["a"]) == 0


def test_rouge_l_hand_computed():
    # LCS("the cat sat on the mat", "the cat is on the mat") = "the cat on the mat" = 5 tokens
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    # precision 2/2, recall 2/4 → F1 = 2 * 1 * 0.5 / 1.5
    assert rouge_l("cancel order", "please cancel your order") == pytest.approx(2 / 3)
    assert rouge_l("", "anything") == 0.0
    assert rouge_l("Same {{Order Number}}", "same {{order number}}") == 1.0


def test_recall_at_k():
    retrieved = [["a", "b", "c"], ["b", "c", "a"], ["c", "c", "c"]]
    assert recall_at_k(retrieved, ["a", "a", "a"], 1).tolist() == [1, 0, 0]
    assert recall_at_k(retrieved, ["a", "a", "a"], 3).tolist() == [1, 1, 0]


def test_r_at_1_counts_ties_as_misses():
    scores = np.array([[0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.1, 0.2, 0.0]])
    assert r_at_1(scores).tolist() == [1.0, 0.0, 0.0]


def test_percentiles():
    assert percentiles([1, 2, 3, 4, 100])["p50"] == 3
    assert np.isnan(percentiles([])["p50"])


def test_rouge_l_f1_is_the_published_lcs_f_measure():
    # LCS("red blue green white", "red green") = 2: precision 2/4, recall 2/2, F1 2/3.
    scores = rouge_l_f1(["red blue green white", "Red, GREEN!", "nothing alike"], ["red green"] * 3)
    assert scores == pytest.approx([2 / 3, 1.0, 0.0])
    # Porter stemming, as ROUGE-1.5.5: "cancelled orders" meets "cancel order".
    assert rouge_l_f1(["cancelled orders"], ["cancel order"])[0] == pytest.approx(1.0)


def test_cosine_rows():
    a = np.array([[1.0, 0.0], [0.0, 0.0], [2.0, 2.0]])
    b = np.array([[1.0, 1.0], [1.0, 0.0], [-1.0, -1.0]])
    assert cosine_rows(a, b) == pytest.approx([2**-0.5, 0.0, -1.0])
