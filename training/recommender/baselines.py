"""The baselines a shop would compare its model against, and their servable form.

Every baseline is one linear item-to-item formula over a history h (newest last):

    score(j) = sum_t w_t * W[h_t, j] + bias[j]

with w_t = decay ** age over the newest ``recent`` items (``recent`` = 0: every item,
weight 1). Most-popular is W = 0 with bias = counts; co-occurrence counts how often j
followed i within a few steps; EASE (Steck, 2019) is the closed-form ridge regression of
each item on all the others with a zero diagonal. Scoring runs in scipy for evaluation
(sparse histories, dense or sparse W); ``to_module`` gives the same formula as a torch
module with the interface of ``SASRec`` that serving and the artifact already speak.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from training.recommender.data import EvalSet
from training.recommender.model import config_from_dict

BaselineName = Literal["most_popular", "cooccurrence", "ease"]
BASELINES: tuple[BaselineName, ...] = ("most_popular", "cooccurrence", "ease")

# EASE inverts a dense (n, n) Gram matrix: about 3 n^2 float32 at the peak (3.9 GB for
# 20,000 items). Larger catalogues keep their EASE_MAX_ITEMS most interacted items; the
# rest are scored by the popularity tie-break alone.
EASE_MAX_ITEMS = 20_000
# Ridge strengths tried on the validation cases when the inversion is cheap (one Cholesky
# per value); a larger catalogue gets EASE_L2 without a search.
EASE_L2_GRID = (10.0, 50.0, 200.0, 800.0)
EASE_L2 = 200.0
EASE_SEARCH_MAX_ITEMS = 5_000


def _counts(
    train: Sequence[np.ndarray], num_items: int, positive: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """Training interactions per item; only the positives when context steps are told apart."""
    steps = list(train) if positive is None else [s[p] for s, p in zip(train, positive, strict=True)]
    counts = np.bincount(np.concatenate(steps or [np.zeros(0, dtype=np.int64)]), minlength=num_items + 1)
    counts = counts.astype(np.float32)
    counts[0] = 0
    return counts


def _tie_break(counts: np.ndarray) -> np.ndarray:
    """Popularity scaled far below one unit of W: it only orders items W leaves equal."""
    return counts / (counts.max() + 1.0) * 1e-3


class ItemToItem:
    """A scorer: (B histories) -> (B, N+1) scores by the formula in the module docstring."""

    name: BaselineName

    def __init__(
        self,
        weights: np.ndarray | sp.spmatrix | None,
        bias: np.ndarray,
        recent: int = 0,
        decay: float = 1.0,
        params: dict | None = None,
    ) -> None:
        self.weights = weights  # (N+1, N+1) or None (= zero)
        self.bias = np.asarray(bias, dtype=np.float32)  # (N+1,)
        self.recent = recent
        self.decay = decay
        self.params = params or {}  # what was fitted or chosen (reported with the metrics)
        self.n = len(self.bias)

    def history_matrix(self, histories: Sequence[np.ndarray]) -> sp.csr_matrix:
        """(B, N+1) sparse: row b holds the weight w_t of each item of history b."""
        rows, cols, weights = [], [], []
        for row, hist in enumerate(histories):
            last = np.asarray(hist[-self.recent :] if self.recent else hist, dtype=np.int64)
            rows.append(np.full(len(last), row))
            cols.append(last)
            weights.append(self.decay ** np.arange(len(last))[::-1])
        empty = np.zeros(0, dtype=np.int64)
        return sp.csr_matrix(
            (
                np.concatenate(weights or [empty]).astype(np.float32),
                (np.concatenate(rows or [empty]), np.concatenate(cols or [empty])),
            ),
            shape=(len(histories), self.n),
        )

    def __call__(self, histories: Sequence[np.ndarray]) -> torch.Tensor:
        if self.weights is None:
            scores = np.zeros((len(histories), self.n), dtype=np.float32)
        else:
            product = self.history_matrix(histories) @ self.weights
            scores = product.toarray() if sp.issparse(product) else np.asarray(product)
        return torch.from_numpy(scores.astype(np.float32, copy=False) + self.bias)

    def to_module(self, max_len: int = 200) -> BaselineModel:
        """The same scores as a torch module for serving (dense W: mind large catalogues)."""
        n = self.n
        if self.weights is None:
            dense = np.zeros((n, n), dtype=np.float32)
        elif sp.issparse(self.weights):
            dense = self.weights.toarray().astype(np.float32)
        else:
            dense = np.asarray(self.weights, dtype=np.float32)
        config = BaselineConfig(
            num_items=n - 1, kind=self.name, max_len=max_len, recent=self.recent, decay=self.decay
        )
        model = BaselineModel(config)
        with torch.no_grad():
            model.weights.copy_(torch.from_numpy(dense))
            model.bias.copy_(torch.from_numpy(self.bias))
        return model.eval()


class MostPopular(ItemToItem):
    """Scores every item by its number of training interactions (positives only, when
    ``positive`` marks some steps as context)."""

    name = "most_popular"

    def __init__(
        self, train: Sequence[np.ndarray], num_items: int, positive: Sequence[np.ndarray] | None = None
    ) -> None:
        super().__init__(None, _counts(train, num_items, positive))
        self.counts = torch.from_numpy(self.bias)


class CoOccurrence(ItemToItem):
    """Item-to-item: how often item j followed item i within ``window`` steps in training.

    A history scores j by the co-occurrence counts of its last ``recent`` items, newer
    ones weighted more; popularity breaks ties among items that never co-occurred. With
    ``positive``, only positives count as the item that followed (context steps lead to one).
    """

    name = "cooccurrence"

    def __init__(
        self,
        train: Sequence[np.ndarray],
        num_items: int,
        window: int = 3,
        recent: int = 3,
        decay: float = 0.6,
        positive: Sequence[np.ndarray] | None = None,
    ) -> None:
        n = num_items + 1
        rows, cols = [], []
        for i, seq in enumerate(train):
            for offset in range(1, window + 1):
                if len(seq) > offset:
                    followed = slice(offset, None)
                    keep = (
                        np.ones(len(seq) - offset, dtype=bool) if positive is None else positive[i][followed]
                    )
                    rows.append(seq[:-offset][keep])
                    cols.append(seq[followed][keep])
        r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        matrix = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n, n))
        matrix.sum_duplicates()
        counts = _counts(train, num_items, positive)
        super().__init__(
            matrix, _tie_break(counts), recent, decay, {"window": window, "recent": recent, "decay": decay}
        )
        self.matrix = matrix
        self.popular = torch.from_numpy(counts)

    def neighbours(self, k: int, both_directions: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Each item's ``k`` most frequent followers and their counts, (N+1, k) each, 0-padded:
        the prior a trained model adds (``SASRec.set_prior``). ``both_directions`` counts the
        items that came before it too: where the log's order is weak (reviews written weeks
        after the purchase), which item came first says little."""
        matrix = (self.matrix + self.matrix.T).tocsr() if both_directions else self.matrix
        items = np.zeros((self.n, k), dtype=np.int64)
        counts = np.zeros((self.n, k), dtype=np.float32)
        indptr, indices, data = matrix.indptr, matrix.indices, matrix.data
        for row in range(self.n):
            cols, vals = indices[indptr[row] : indptr[row + 1]], data[indptr[row] : indptr[row + 1]]
            if len(cols) > k:
                keep = np.argsort(-vals, kind="stable")[:k]
                cols, vals = cols[keep], vals[keep]
            items[row, : len(cols)] = cols
            counts[row, : len(cols)] = vals
        return torch.from_numpy(items), torch.from_numpy(counts)


def ease_weights(interactions: sp.csr_matrix, l2: float) -> np.ndarray:
    """EASE's closed form: B = I - P / diag(P) with P = (X^T X + l2 I)^-1, so diag(B) = 0.

    ``interactions`` (users, n) binary; returns B (n, n) float32. One Cholesky
    factorisation and inverse in torch (which honours ``torch.set_num_threads``).
    """
    gram = torch.from_numpy((interactions.T @ interactions).toarray().astype(np.float32))
    gram.diagonal().add_(l2)
    factor = torch.linalg.cholesky(gram)
    del gram
    p = torch.cholesky_inverse(factor)
    del factor
    b = p / (-p.diagonal()).unsqueeze(0)  # B[i, j] = -P[i, j] / P[j, j]
    b.diagonal().zero_()
    return b.numpy()


class EASE(ItemToItem):
    """EASE over every item of a history, weight 1 each; popularity breaks ties.

    ``l2`` None: chosen from ``EASE_L2_GRID`` by NDCG@10 on ``valid`` when the catalogue
    has at most ``EASE_SEARCH_MAX_ITEMS`` items (and ``valid`` is given), else ``EASE_L2``.
    """

    name = "ease"

    def __init__(
        self,
        train: Sequence[np.ndarray],
        num_items: int,
        l2: float | None = None,
        valid: EvalSet | None = None,
        max_items: int = EASE_MAX_ITEMS,
        positive: Sequence[np.ndarray] | None = None,
    ) -> None:
        n = num_items + 1
        counts = _counts(train, num_items)
        # The modelled items: those with interactions, at most max_items of the most frequent.
        order = np.argsort(-counts, kind="stable")
        kept = np.sort(order[: min(max_items, int((counts > 0).sum()))])
        position = np.full(n, -1, dtype=np.int64)
        position[kept] = np.arange(len(kept))
        rows, cols = [], []
        for u, seq in enumerate(train):
            at = position[np.unique(seq)]
            at = at[at >= 0]
            rows.append(np.full(len(at), u))
            cols.append(at)
        x = sp.csr_matrix(
            (
                np.ones(sum(len(c) for c in cols), dtype=np.float32),
                (np.concatenate(rows), np.concatenate(cols)),
            ),
            shape=(len(train), len(kept)),
        )
        self.kept = kept
        self._x = x
        # Every step is a row entry (the model is item-to-item); the tie-break counts positives.
        bias = _tie_break(_counts(train, num_items, positive))
        super().__init__(None, bias)
        grid = (
            EASE_L2_GRID
            if l2 is None and valid is not None and len(valid.targets) and len(kept) <= EASE_SEARCH_MAX_ITEMS
            else (l2 if l2 is not None else EASE_L2,)
        )
        best = None
        for value in grid:
            self._fit(value)
            if len(grid) == 1:
                break
            from training.recommender.evaluation import evaluate_scorer

            score = evaluate_scorer(self, valid, num_items, sampled=0)["ndcg@10"]
            if best is None or score > best[1]:
                best = (value, score, self.weights)
        if best is not None:
            self.weights = best[2]
            self.params = {"l2": best[0], "l2_grid": list(grid)}
        self.params["items_modelled"] = len(kept)
        del self._x

    def neighbours(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each item's ``k`` largest positive weights and their items, (N+1, k) each, 0-padded,
        scaled so that the mean kept weight is 1: the second prior a trained model adds
        (``SASRec.set_ease_prior``), in units that do not depend on the ridge strength."""
        weights = torch.from_numpy(self.weights)
        values, items = torch.topk(weights, min(k, self.n), dim=1)
        keep = values > 0
        items, values = items * keep, values * keep
        if keep.any():
            values = values / values[keep].mean()
        return items, values.float()

    def _fit(self, l2: float) -> None:
        b = ease_weights(self._x, l2)
        full = np.zeros((self.n, self.n), dtype=np.float32)
        if len(self.kept) == self.n - 1:  # every item modelled: B is W without row/column 0
            full[1:, 1:] = b
        else:
            full[np.ix_(self.kept, self.kept)] = b
        self.weights = full
        self.params = {"l2": l2}


def fit_baselines(
    train: Sequence[np.ndarray],
    num_items: int,
    valid: EvalSet | None = None,
    positive: Sequence[np.ndarray] | None = None,
) -> dict[str, ItemToItem]:
    """Every baseline, fitted on the training sequences (``valid`` only tunes EASE's l2;
    ``positive`` marks which steps are positives, None: all)."""
    return {
        "most_popular": MostPopular(train, num_items, positive),
        "cooccurrence": CoOccurrence(train, num_items, positive=positive),
        "ease": EASE(train, num_items, valid=valid, positive=positive),
    }


# --- the servable form ---------------------------------------------------------------------------


@dataclass
class BaselineConfig:
    """Everything needed to rebuild a baseline module from JSON."""

    num_items: int  # catalogue size without padding; item indices run 1..num_items
    kind: BaselineName = "ease"
    max_len: int = 200  # newest items of a history that serving passes in
    recent: int = 0  # newest items that score (0: all of them)
    decay: float = 1.0  # weight of an item one step older than the next

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> BaselineConfig:
        return config_from_dict(cls, values, "baseline")


class BaselineModel(nn.Module):
    """A fitted baseline with ``SASRec``'s serving interface (``full_sort_scores``,
    ``item_vectors``, ``config.max_len``, ``config.num_items``); its tensors are frozen."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        self.config = config
        n = config.num_items + 1
        self.weights = nn.Parameter(torch.zeros(n, n), requires_grad=False)  # (N+1, N+1)
        self.bias = nn.Parameter(torch.zeros(n), requires_grad=False)  # (N+1,)

    def history_weights(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, T) left-padded histories -> (B, N+1) weight of each item in each history."""
        B, T = seq.shape
        age = torch.arange(T - 1, -1, -1, device=seq.device).expand(B, T)  # newest = 0
        # Ages count real items only: padding sits on the left, so position age is item age.
        w = torch.full((B, T), 1.0, device=seq.device)
        if self.config.recent:
            w = torch.where(age < self.config.recent, self.config.decay ** age.float(), 0.0)
        w = w * (seq > 0)
        x = torch.zeros(B, self.config.num_items + 1, device=seq.device)
        return x.scatter_add_(1, seq, w)

    def full_sort_scores(self, seq: torch.Tensor, item_table: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) histories -> (B, N+1) scores of every item for the next step; column 0 is -inf.
        ``item_table`` is ignored: the scores are one product with the fixed weights."""
        scores = self.history_weights(seq) @ self.weights + self.bias
        scores[:, 0] = float("-inf")
        return scores

    def item_vectors(self) -> torch.Tensor:
        """(N+1, N+1): row i says how item i scores every item, which makes a similarity."""
        return self.weights
