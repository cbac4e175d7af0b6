"""The baselines against hand-computed cases, their servable module, and the one comparison."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.recommender.baselines import (
    EASE,
    BaselineModel,
    CoOccurrence,
    MostPopular,
    ease_weights,
    fit_baselines,
)
from training.recommender.data import EvalSet, left_pad
from training.recommender.evaluation import evaluate_with_baselines


def test_ease_closed_form_by_hand():
    # Users {1, 2} and {1}: G = X^T X = [[2, 1], [1, 1]]; with l2 = 1, G + I = [[3, 1], [1, 2]],
    # P = (1/5) [[2, -1], [-1, 3]], B[i, j] = -P[i, j] / P[j, j]: B[1->2] = 1/3, B[2->1] = 1/2.
    # The same as the two one-variable ridge regressions: item 2 on item 1 is 1 / (2 + 1),
    # item 1 on item 2 is 1 / (1 + 1).
    import scipy.sparse as sp

    x = sp.csr_matrix(np.array([[1, 1], [1, 0]], dtype=np.float32))
    b = ease_weights(x, l2=1.0)
    assert b == pytest.approx(np.array([[0.0, 1 / 3], [1 / 2, 0.0]]), abs=1e-6)
    ease = EASE([np.array([1, 2]), np.array([1])], num_items=2, l2=1.0)
    scores = ease([np.array([1]), np.array([2]), np.array([1, 2])])
    # Popularity (2 and 1 interactions) only breaks ties, a thousandth of a unit at most.
    assert scores[0, 2].item() == pytest.approx(1 / 3, abs=1e-3)
    assert scores[1, 1].item() == pytest.approx(1 / 2, abs=1e-3)
    assert scores[2, 1].item() == pytest.approx(1 / 2, abs=1e-3)  # the diagonal is zero
    assert ease.params == {"l2": 1.0, "items_modelled": 2}


def test_ease_keeps_the_most_interacted_items_when_the_catalogue_is_too_large():
    train = [np.array([1, 2, 3]), np.array([1, 2]), np.array([1, 4])]
    ease = EASE(train, num_items=4, l2=1.0, max_items=2)
    assert ease.kept.tolist() == [1, 2] and ease.params["items_modelled"] == 2
    # Items 3 and 4 have no row or column: only the popularity tie-break scores them.
    assert np.all(ease.weights[[0, 3, 4]] == 0) and np.all(ease.weights[:, [0, 3, 4]] == 0)
    assert ease.weights[1, 2] > 0


def test_ease_neighbours_keep_each_items_largest_positive_weights_scaled_to_mean_one():
    ease = EASE([np.array([1, 2])], num_items=3, l2=1.0)
    ease.weights = np.array(
        [[0, 0, 0, 0], [0, 0, 0.4, -0.1], [0, 0.2, 0, 0.3], [0, -0.5, -0.2, 0]], dtype=np.float32
    )
    items, values = ease.neighbours(2)
    # Item 1: only 2 is positive; item 2: 3 then 1; item 3 and the padding row: none.
    assert items.tolist() == [[0, 0], [2, 0], [3, 1], [0, 0]]
    mean = (0.4 + 0.3 + 0.2) / 3
    expected = np.array([[0, 0], [0.4, 0], [0.3, 0.2], [0, 0]]) / mean
    assert values.numpy() == pytest.approx(expected, rel=1e-5)


def test_ease_chooses_l2_on_the_validation_cases():
    # Item 1 is always followed by 2 in training and in the validation cases.
    train = [np.array([1, 2])] * 5 + [np.array([3, 4])] * 2 + [np.array([1, 3])]
    valid = EvalSet(np.arange(2), [np.array([1]), np.array([3])], np.array([2, 4]))
    ease = EASE(train, num_items=4, valid=valid)
    assert ease.params["l2"] in ease.params["l2_grid"] and len(ease.params["l2_grid"]) > 1


def test_cooccurrence_and_popularity_by_hand():
    train = [np.array([1, 2, 3]), np.array([1, 2]), np.array([3, 4])]
    pop = MostPopular(train, num_items=4)([np.array([1])])
    assert pop[0].tolist() == [0, 2, 2, 2, 1]
    cooc = CoOccurrence(train, num_items=4, window=1, recent=1)
    scores = cooc([np.array([1]), np.array([3])])
    # After 1 comes 2 (twice); after 3 comes 4 (once).
    assert scores[0].argmax().item() == 2 and scores[1].argmax().item() == 4
    assert scores[0, 2] == pytest.approx(2.0, abs=1e-2)
    cooc = CoOccurrence(train, num_items=4, window=1, recent=2, decay=0.5)
    # History [1, 3]: 3 (newest, weight 1) is followed by 4 once; 1 (weight 0.5) by 2 twice.
    scores = cooc([np.array([1, 3])])
    assert scores[0, 4].item() == pytest.approx(1.0, abs=1e-2)
    assert scores[0, 2].item() == pytest.approx(1.0, abs=1e-2)
    assert scores[0, 3].item() == pytest.approx(0.0, abs=1e-2)


@pytest.mark.parametrize("name", ["most_popular", "cooccurrence", "ease"])
def test_the_servable_module_scores_like_the_scorer(name):
    rng = np.random.default_rng(0)
    train = [rng.integers(1, 13, rng.integers(3, 9)) for _ in range(60)]
    baseline = fit_baselines(train, num_items=12)[name]
    module = baseline.to_module(max_len=8)
    assert isinstance(module, BaselineModel) and module.config.kind == name
    histories = [np.array([3, 1, 4]), np.array([5]), np.array([9, 2, 6, 5, 3, 5])]
    expected = baseline(histories)
    got = module.full_sort_scores(torch.from_numpy(left_pad(histories, 8)))
    assert torch.isneginf(got[:, 0]).all()
    assert got[:, 1:] == pytest.approx(expected[:, 1:], abs=1e-5)


def test_evaluate_with_baselines_names_the_best_and_says_whether_the_model_beats_it():
    # Everyone's next item is the item after their last one: co-occurrence and EASE learn it.
    train = [np.array([i, i + 1, i + 2]) for i in range(1, 8)] * 3
    cases = EvalSet(np.arange(3), [np.array([2, 3]), np.array([4, 5]), np.array([6])], np.array([4, 6, 7]))

    def oracle(histories):
        scores = torch.zeros(len(histories), 11)
        for row, h in enumerate(histories):
            scores[row, h[-1] + 1] = 1.0
        return scores

    result = evaluate_with_baselines(oracle, train, cases, num_items=10, sampled=0)
    assert set(result["baselines"]) == {"most_popular", "cooccurrence", "ease"}
    best = result["best_baseline"]
    assert result["baselines"][best]["ndcg@10"] == max(b["ndcg@10"] for b in result["baselines"].values())
    assert result["ndcg@10"] == pytest.approx(1.0)
    # The oracle ranks every target first; a baseline that does too is not beaten.
    assert result["beats_best_baseline"] == (result["baselines"][best]["ndcg@10"] < 1.0)

    def constant(histories):
        return torch.zeros(len(histories), 11)

    worse = evaluate_with_baselines(constant, train, cases, num_items=10, sampled=0)
    # Ties count against the target: every target ranks last among the unseen items.
    assert worse["beats_best_baseline"] is False
    assert worse["ndcg@10"] < worse["baselines"][worse["best_baseline"]]["ndcg@10"]


def test_cooccurrence_neighbours_keep_each_items_most_frequent_followers():
    train = [np.array([1, 2, 3]), np.array([1, 2]), np.array([1, 4]), np.array([3, 4])]
    cooc = CoOccurrence(train, num_items=4, window=1)
    items, counts = cooc.neighbours(1)
    assert items.shape == counts.shape == (5, 1)
    # After 1: 2 twice, 4 once -> only 2 is kept; after 3: 4 once; 4 is never followed.
    assert (items[1, 0].item(), counts[1, 0].item()) == (2, 2.0)
    assert (items[3, 0].item(), counts[3, 0].item()) == (4, 1.0)
    assert (items[4, 0].item(), counts[4, 0].item()) == (0, 0.0)
    items, counts = cooc.neighbours(3)
    assert sorted(zip(items[1].tolist(), counts[1].tolist(), strict=True)) == [(0, 0.0), (2, 2.0), (4, 1.0)]
    # Both directions: 4 came after 1 once and after 3 once, and nothing came after it.
    items, counts = cooc.neighbours(3, both_directions=True)
    assert sorted(zip(items[4].tolist(), counts[4].tolist(), strict=True)) == [(0, 0.0), (1, 1.0), (3, 1.0)]
    assert sorted(zip(items[2].tolist(), counts[2].tolist(), strict=True)) == [(0, 0.0), (1, 2.0), (3, 1.0)]
