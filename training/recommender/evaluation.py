"""Evaluation: full ranking over all items with seen items filtered.

A scorer maps a batch of histories to full-catalogue scores (B, N+1); the model and the
baselines (most-popular, co-occurrence, EASE: ``baselines``) are all scorers, so they
are measured by the same code on the same cases.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from training.recommender.baselines import ItemToItem, fit_baselines
from training.recommender.data import EvalSet, left_pad
from training.recommender.inference import Recommender, mask_seen, score_histories
from training.recommender.model import SASRec, neighbour_scores

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
        mask_seen(scores, cases.filtered[start : start + batch_size])
        ranks.append(target_ranks(scores, targets))
        tops.append(torch.topk(scores, min(k, scores.shape[1]), dim=1).indices)
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


@dataclass(frozen=True)
class PriorTables:
    """One way to build a prior: each item's neighbours and counts (N+1, K), how many of a
    history's newest items add theirs, and the decay per step of age."""

    items: torch.Tensor
    counts: torch.Tensor
    recent: int
    decay: float


def best_weight(ndcg: dict[float, float]) -> float:
    # Ties go to the smaller weight: the prior must earn its place.
    return max(sorted(ndcg), key=lambda w: (ndcg[w], -w))


def prior_ndcg(
    model: SASRec,
    cases: EvalSet,
    variants: dict[str, PriorTables],
    weights: Sequence[float],
    k: int = 10,
    batch_size: int = 1024,
    chosen: Sequence[tuple[PriorTables, float]] = (),
) -> dict[str, dict[float, float]]:
    """NDCG@k on ``cases`` of the model's scores plus each variant's prior at each weight.
    The model scores each batch once; a variant adds its prior, a weight only a sum.
    ``chosen``: priors already settled, with their weights, added before the variants."""
    model.eval()
    ranks = {name: {w: [] for w in weights} for name in variants}
    with torch.no_grad():
        for start in range(0, len(cases.targets), batch_size):
            seq = torch.from_numpy(
                left_pad(list(cases.histories[start : start + batch_size]), model.config.max_len)
            )
            h = model(seq)[:, -1, :]
            learned = (h @ model.item_vectors().T).float()  # without the prior
            for t, w in chosen:
                learned += w * neighbour_scores(seq, t.items, t.counts, t.recent, t.decay).float()
            targets = torch.from_numpy(cases.targets[start : start + batch_size])
            for name, t in variants.items():
                prior = neighbour_scores(seq, t.items, t.counts, t.recent, t.decay).float()
                for w in weights:
                    scores = learned + w * prior
                    scores[:, 0] = float("-inf")
                    mask_seen(scores, cases.filtered[start : start + batch_size])
                    ranks[name][w].append(target_ranks(scores, targets))
    return {
        name: {w: ranking_metrics(torch.cat(r), k)[f"ndcg@{k}"] for w, r in by_weight.items()}
        for name, by_weight in ranks.items()
    }


def model_scorer(model: SASRec, batch_size: int = 1024) -> Scorer:
    return lambda histories: score_histories(model, histories, batch_size)


def evaluate_with_baselines(
    model: SASRec | Scorer,
    train: Sequence[np.ndarray],
    cases: EvalSet,
    num_items: int,
    k: int = 10,
    sampled: int = 100,
    baselines: dict[str, ItemToItem] | None = None,
    valid: EvalSet | None = None,
    train_positive: Sequence[np.ndarray] | None = None,
) -> dict:
    """The one place a model is compared with its baselines: the model's metrics, every
    baseline's on the same cases, the best baseline by NDCG@k and whether the model beats it.

    ``baselines`` are fitted on ``train`` when not given (``valid`` tunes EASE's l2;
    ``train_positive`` tells positives from context steps).
    """
    scorer = model_scorer(model) if isinstance(model, torch.nn.Module) else model
    result = evaluate_scorer(scorer, cases, num_items, k=k, sampled=sampled)
    if baselines is None:
        baselines = fit_baselines(train, num_items, valid, train_positive)
    result["baselines"] = {}
    for name, baseline in baselines.items():
        figures = evaluate_scorer(baseline, cases, num_items, k=k, sampled=sampled)
        if baseline.params:
            figures["params"] = baseline.params
        result["baselines"][name] = figures
    metric = f"ndcg@{k}"
    best = max(result["baselines"], key=lambda name: result["baselines"][name][metric])
    result["best_baseline"] = best
    result["beats_best_baseline"] = result[metric] > result["baselines"][best][metric]
    return result


def vocabulary_scorer(recommender: Recommender, items: list[str]) -> Scorer:
    """Score histories given in ``items``' indices with a model of another vocabulary.

    Histories are mapped through the string ids; items the model does not know get -inf,
    so two models with different vocabularies are compared on exactly the same cases.
    """
    to_model = np.array([0] + [recommender.index.get(item, 0) for item in items], dtype=np.int64)
    known = torch.from_numpy(to_model > 0)
    gather = torch.from_numpy(to_model)

    def score(histories):
        mapped = [to_model[h][to_model[h] > 0] for h in histories]
        model_scores = score_histories(recommender.model, mapped)
        scores = model_scores[:, gather]
        scores[:, ~known] = float("-inf")
        return scores

    return score


def metrics_plot_png(metrics: dict, k: int = 10) -> bytes:
    """Bar chart of HR@k, NDCG@k and MRR for the model and each baseline, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"hr@{k}", f"ndcg@{k}", "mrr"]
    rows = {"model": metrics, **metrics.get("baselines", {})}
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    width = 0.8 / len(rows)
    for i, (label, values) in enumerate(rows.items()):
        ax.bar(np.arange(len(names)) + i * width, [values.get(m, 0.0) for m in names], width, label=label)
    ax.set_xticks(np.arange(len(names)) + width * (len(rows) - 1) / 2, names)
    ax.set_ylabel("score")
    ax.set_title("Recommender, leave-one-out test, full ranking")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
