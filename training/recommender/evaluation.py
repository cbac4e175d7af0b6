"""Leave-one-out evaluation: full ranking over all items with seen items filtered.

A scorer maps a batch of histories to full-catalogue scores (B, N+1); the model, the
most-popular baseline and the co-occurrence baseline are all scorers, so they are
measured by the same code on the same cases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from training.recommender.data import EvalSet
from training.recommender.inference import mask_seen, score_histories
from training.recommender.model import SASRec

Scorer = Callable[[Sequence[np.ndarray]], torch.Tensor]


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target; ties count against the target (pessimistic),
    so a scorer that gives every item the same score ranks last, not first."""
    target_scores = scores.gather(1, targets.view(-1, 1))
    at_least = (scores >= target_scores).sum(1) - 1  # minus the target itself
    return at_least


def ranking_metrics(ranks: torch.Tensor, k: int = 10) -> dict[str, float]:
    """HR@k, NDCG@k (one relevant item: 1/log2(rank+2) inside the top k) and MRR."""
    ranks = ranks.double()
    hit = ranks < k
    return {
        f"hr@{k}": hit.double().mean().item(),
        f"ndcg@{k}": torch.where(hit, 1.0 / torch.log2(ranks + 2.0), 0.0).mean().item(),
        "mrr": (1.0 / (ranks + 1.0)).mean().item(),
    }


def coverage(top_items: torch.Tensor, num_items: int) -> float:
    """Share of the catalogue that appears in at least one top-k list."""
    recommended = torch.unique(top_items)
    return float((recommended > 0).sum().item()) / num_items


def sampled_ranks(
    scores: torch.Tensor, targets: torch.Tensor, num_negatives: int, generator: torch.Generator
) -> torch.Tensor:
    """Rank of the target among ``num_negatives`` unseen items drawn uniformly per row.

    Expects seen items already at -inf; random keys pick the negatives in one topk.
    """
    keys = torch.rand(scores.shape, generator=generator)
    keys[torch.isneginf(scores)] = 2.0  # seen items and padding are never drawn
    keys.scatter_(1, targets.view(-1, 1), 2.0)
    # A catalogue smaller than the sample gives every unseen item (drawn keys stay below 2).
    drawn = torch.topk(keys, min(num_negatives, keys.shape[1]), dim=1, largest=False)
    eligible = drawn.values < 2.0
    target_scores = scores.gather(1, targets.view(-1, 1))
    return ((scores.gather(1, drawn.indices) >= target_scores) & eligible).sum(1)


def evaluate_scorer(
    scorer: Scorer,
    cases: EvalSet,
    num_items: int,
    k: int = 10,
    batch_size: int = 1024,
    sampled: int = 100,
    seed: int = 0,
) -> dict:
    """HR@k, NDCG@k, MRR and coverage (full ranking, seen filtered), plus the sampled extra."""
    generator = torch.Generator().manual_seed(seed)
    ranks, sranks, tops = [], [], []
    for start in range(0, len(cases.targets), batch_size):
        histories = cases.histories[start : start + batch_size]
        targets = torch.from_numpy(cases.targets[start : start + batch_size])
        scores = scorer(histories).float().cpu().clone()
        scores[:, 0] = float("-inf")
        mask_seen(scores, histories)
        ranks.append(target_ranks(scores, targets))
        tops.append(torch.topk(scores, k, dim=1).indices)
        if sampled:
            sranks.append(sampled_ranks(scores, targets, sampled, generator))
    if not ranks:
        raise ValueError("no evaluation cases")
    result = ranking_metrics(torch.cat(ranks), k)
    result["coverage"] = coverage(torch.cat(tops), num_items)
    result["cases"] = len(cases.targets)
    if sampled:
        # Old papers rank the target against 100 sampled items; kept only to compare with them.
        extra = ranking_metrics(torch.cat(sranks), k)
        result[f"sampled{sampled}"] = {f"hr@{k}": extra[f"hr@{k}"], f"ndcg@{k}": extra[f"ndcg@{k}"]}
    return result


def model_scorer(model: SASRec, batch_size: int = 1024) -> Scorer:
    return lambda histories: score_histories(model, histories, batch_size)


class MostPopular:
    """Scores every item by its number of training interactions."""

    def __init__(self, train: Sequence[np.ndarray], num_items: int) -> None:
        counts = np.bincount(np.concatenate(list(train)), minlength=num_items + 1).astype(np.float32)
        counts[0] = 0
        self.counts = torch.from_numpy(counts)

    def __call__(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        return self.counts.expand(len(histories), -1)


class CoOccurrence:
    """Item-to-item: how often item j followed item i within ``window`` steps in training.

    A history scores j by the co-occurrence counts of its last ``recent`` items, newer
    ones weighted more; popularity breaks ties among items that never co-occurred.
    """

    def __init__(
        self,
        train: Sequence[np.ndarray],
        num_items: int,
        window: int = 3,
        recent: int = 3,
        decay: float = 0.6,
    ) -> None:
        n = num_items + 1
        rows, cols = [], []
        for seq in train:
            for offset in range(1, window + 1):
                if len(seq) > offset:
                    rows.append(seq[:-offset])
                    cols.append(seq[offset:])
        r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        self.matrix = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n, n))
        self.matrix.sum_duplicates()
        self.popular = MostPopular(train, num_items).counts
        self.recent = recent
        self.decay = decay
        self.n = n

    def __call__(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        rows, cols, weights = [], [], []
        for row, hist in enumerate(histories):
            last = np.asarray(hist[-self.recent :], dtype=np.int64)
            rows.append(np.full(len(last), row))
            cols.append(last)
            weights.append(self.decay ** np.arange(len(last))[::-1])
        w = sp.csr_matrix(
            (np.concatenate(weights).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
            shape=(len(histories), self.n),
        )
        scores = torch.from_numpy((w @ self.matrix).toarray())
        # Popularity as a tie-breaker far below one co-occurrence.
        return scores + self.popular / (self.popular.max() + 1.0) * 1e-3


def evaluate_with_baselines(
    model: SASRec,
    train: Sequence[np.ndarray],
    cases: EvalSet,
    num_items: int,
    k: int = 10,
    sampled: int = 100,
) -> dict:
    """The model's metrics with both baselines measured on the same cases."""
    result = evaluate_scorer(model_scorer(model), cases, num_items, k=k, sampled=sampled)
    result["baselines"] = {
        "most_popular": evaluate_scorer(
            MostPopular(train, num_items), cases, num_items, k=k, sampled=sampled
        ),
        "cooccurrence": evaluate_scorer(
            CoOccurrence(train, num_items), cases, num_items, k=k, sampled=sampled
        ),
    }
    return result
