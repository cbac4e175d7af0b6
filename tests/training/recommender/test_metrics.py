"""Ranking metrics against hand-computed arrays; the batched exclusion helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.recommender.data import EvalSet
from training.recommender.evaluation import (
    coverage,
    evaluate_scorer,
    ranking_metrics,
    sampled_ranks,
    target_ranks,
)
from training.recommender.inference import mask_seen, top_k


def test_target_ranks_by_hand():
    scores = torch.tensor(
        [
            [-math.inf, 0.9, 0.1, 0.5, 0.3],  # target 1 is best -> rank 0
            [-math.inf, 0.9, 0.1, 0.5, 0.3],  # target 4: 0.9 and 0.5 above -> rank 2
            [-math.inf, 0.2, 0.2, 0.2, 0.2],  # all tied: pessimistic -> last of 4 (rank 3)
        ]
    )
    assert target_ranks(scores, torch.tensor([1, 4, 2])).tolist() == [0, 2, 3]


def test_ranking_metrics_by_hand():
    ranks = torch.tensor([0, 2, 9, 10, 50])
    m = ranking_metrics(ranks, k=10)
    assert m["hr@10"] == pytest.approx(3 / 5)
    ndcg = (1 / math.log2(2) + 1 / math.log2(4) + 1 / math.log2(11)) / 5
    assert m["ndcg@10"] == pytest.approx(ndcg)
    mrr = (1 + 1 / 3 + 1 / 10 + 1 / 11 + 1 / 51) / 5
    assert m["mrr"] == pytest.approx(mrr)


def test_hr_at_one_and_coverage():
    m = ranking_metrics(torch.tensor([0, 1, 0, 3]), k=1)
    assert m["hr@1"] == 0.5 and m["ndcg@1"] == 0.5
    assert coverage(torch.tensor([[1, 2], [2, 3], [0, 3]]), num_items=6) == pytest.approx(3 / 6)


def test_mask_seen_and_top_k_exclusions():
    scores = torch.arange(6, dtype=torch.float32).repeat(2, 1)  # item 5 best, then 4, 3 ...
    histories = [np.array([5, 2]), np.array([], dtype=np.int64)]
    masked = mask_seen(scores.clone(), histories)
    assert torch.isinf(masked[0, [5, 2]]).all() and not torch.isinf(masked[1]).any()
    out_of_stock = torch.zeros(6, dtype=torch.bool)
    out_of_stock[4] = True
    values, items = top_k(scores, 2, histories, out_of_stock)
    assert items.tolist() == [[3, 1], [5, 3]]
    assert values.tolist() == [[3.0, 1.0], [5.0, 3.0]]
    # Never the padding column, even when it scores highest.
    _, items = top_k(torch.tensor([[9.0, 1.0, 2.0]]), 1)
    assert items.tolist() == [[2]]


def test_sampled_ranks_never_draw_seen_items_or_the_target():
    g = torch.Generator().manual_seed(0)
    n = 200
    scores = torch.rand(4, n + 1, generator=g)
    scores[:, 0] = -math.inf
    scores[:, 1:101] = -math.inf  # "seen": only items 101..200 may be negatives
    targets = torch.tensor([150, 160, 170, 180])
    scores[torch.arange(4), targets] = 10.0  # best of all unseen
    assert sampled_ranks(scores, targets, 99, g).tolist() == [0, 0, 0, 0]
    scores[torch.arange(4), targets] = -1.0  # worst of all: all 99 drawn negatives beat it
    assert sampled_ranks(scores, targets, 99, g).tolist() == [99, 99, 99, 99]
    # Fewer unseen items than asked for: all of them, and no seen one.
    assert sampled_ranks(scores, targets, 500, g).tolist() == [99, 99, 99, 99]


def test_evaluate_scorer_filters_seen_items_batched():
    # A scorer that loves item 1; users have seen it, so it must not count.
    def scorer(histories):
        s = torch.zeros(len(histories), 5)
        s[:, 1] = 100.0
        s[:, 2] = 50.0
        s[:, 3] = 10.0
        return s

    cases = EvalSet(np.arange(3), [np.array([1]), np.array([1, 2]), np.array([4])], np.array([2, 3, 2]))
    m = evaluate_scorer(scorer, cases, num_items=4, k=1, batch_size=2, sampled=0)
    # Case 0: 1 seen -> 2 first (hit). Case 1: 1, 2 seen -> 3 first (hit). Case 2: 1 beats 2 (miss).
    assert m["hr@1"] == pytest.approx(2 / 3)
    assert m["cases"] == 3


def test_the_prior_weight_is_taken_when_the_prior_knows_the_answer_and_left_out_when_it_misleads():
    from training.recommender.evaluation import PriorTables, best_weight, prior_ndcg
    from training.recommender.model import RecommenderConfig, SASRec

    torch.manual_seed(0)
    model = SASRec(RecommenderConfig(num_items=20, max_len=4, hidden=16, num_blocks=1, dropout=0.0)).eval()
    last = np.arange(1, 21)
    follows = last % 20 + 1  # the item that comes after each item
    cases = EvalSet(np.arange(20), [np.array([i]) for i in last], follows)
    weights = (0.0, 1.0, 5.0)

    def choose(table: np.ndarray) -> tuple[float, dict[float, float]]:
        items = torch.zeros(21, 1, dtype=torch.long)
        items[1:, 0] = torch.from_numpy(table)
        prior = PriorTables(items, (items > 0).float(), recent=1, decay=1.0)
        ndcg = prior_ndcg(model, cases, {"prior": prior}, weights)["prior"]
        return best_weight(ndcg), ndcg

    best, ndcg = choose(follows)
    assert best > 0 and ndcg[best] == pytest.approx(1.0) and ndcg[0.0] < 0.5
    best, ndcg = choose(follows % 20 + 1)  # one item off: never the target
    assert best == 0.0 and ndcg[5.0] <= ndcg[0.0]


def test_each_way_of_building_the_prior_is_scored_on_the_same_cases():
    from training.recommender.evaluation import PriorTables, prior_ndcg
    from training.recommender.model import RecommenderConfig, SASRec

    torch.manual_seed(0)
    model = SASRec(RecommenderConfig(num_items=20, max_len=4, hidden=16, num_blocks=1, dropout=0.0)).eval()
    # Histories of two items; only the older one has a neighbour, and it is the target.
    older, newest = np.arange(1, 11), np.arange(11, 21)
    target = 11 + older % 10
    cases = EvalSet(np.arange(10), [np.array([a, b]) for a, b in zip(older, newest, strict=True)], target)
    items = torch.zeros(21, 1, dtype=torch.long)
    items[1:11, 0] = torch.from_numpy(target)
    counts = (items > 0).float()
    ndcg = prior_ndcg(
        model,
        cases,
        {"newest only": PriorTables(items, counts, 1, 1.0), "two newest": PriorTables(items, counts, 2, 0.5)},
        (0.0, 10.0),
    )
    # Only the variant that reads the older item finds the targets.
    assert ndcg["two newest"][10.0] == pytest.approx(1.0) and ndcg["newest only"][10.0] < 0.5
    assert ndcg["two newest"][0.0] == ndcg["newest only"][0.0]  # the model alone is the same
