"""Scoring and top-k with exclusions, shared by the evaluation and the serving layer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from training.recommender.data import left_pad
from training.recommender.model import SASRec


def mask_seen(scores: torch.Tensor, histories: Sequence[np.ndarray]) -> torch.Tensor:
    """Set the score of every item in row i's history to -inf (in place), in one scatter."""
    lengths = [len(h) for h in histories]
    if sum(lengths) == 0:
        return scores
    rows = torch.from_numpy(np.repeat(np.arange(len(histories)), lengths))
    cols = torch.from_numpy(np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]))
    scores[rows.to(scores.device), cols.to(scores.device)] = float("-inf")
    return scores


def top_k(
    scores: torch.Tensor,
    k: int,
    histories: Sequence[np.ndarray] | None = None,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best items per row: (B, k) scores and item indices.

    ``histories`` removes each row's seen items; ``exclude`` is a (N+1,) bool mask of items
    no one may get (out of stock, withdrawn). Column 0 (padding) is never returned unless
    fewer than k items remain, in which case the tail has score -inf.
    """
    scores = scores.clone()
    scores[:, 0] = float("-inf")
    if histories is not None:
        mask_seen(scores, histories)
    if exclude is not None:
        scores[:, exclude.to(scores.device)] = float("-inf")
    k = min(k, scores.shape[1])
    return torch.topk(scores, k, dim=1)


@torch.no_grad()
def score_histories(model: SASRec, histories: Sequence[np.ndarray], batch_size: int = 1024) -> torch.Tensor:
    """Full-catalogue scores (len(histories), N+1) for the next item after each history."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(histories), batch_size):
        batch = histories[start : start + batch_size]
        seq = torch.from_numpy(left_pad(list(batch), model.config.max_len)).to(device)
        out.append(model.full_sort_scores(seq).float().cpu())
    return torch.cat(out) if out else torch.empty(0, model.config.num_items + 1)


class Recommender:
    """A trained model with its vocabulary: string item ids in, string item ids out."""

    def __init__(self, model: SASRec, items: list[str], in_stock: np.ndarray | None = None) -> None:
        if len(items) != model.config.num_items:
            raise ValueError(
                f"vocabulary has {len(items)} items but the model was built for {model.config.num_items}"
            )
        self.model = model.eval()
        self.items = list(items)
        self.index = {item: i + 1 for i, item in enumerate(self.items)}
        n = len(items) + 1
        self.unavailable = torch.zeros(n, dtype=torch.bool)
        if in_stock is not None:
            self.set_in_stock(in_stock)

    def set_in_stock(self, in_stock: np.ndarray) -> None:
        """(N+1,) bool, aligned with the vocabulary; False items are never recommended."""
        self.unavailable = ~torch.as_tensor(np.asarray(in_stock, dtype=bool))
        self.unavailable[0] = True

    def encode(self, history: Sequence[str]) -> np.ndarray:
        """Item ids to indices; ids the model does not know are dropped."""
        return np.asarray([self.index[i] for i in history if i in self.index], dtype=np.int64)

    @torch.no_grad()
    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        k: int = 10,
        exclude_seen: bool = True,
        exclude: Sequence[str] = (),
    ) -> list[list[tuple[str, float]]]:
        """Top-k (item id, score) per history, one batched forward pass for all of them."""
        encoded = [self.encode(h) for h in histories]
        scores = score_histories(self.model, encoded)
        banned = self.unavailable.clone()
        for item in exclude:
            if item in self.index:
                banned[self.index[item]] = True
        values, indices = top_k(scores, k, encoded if exclude_seen else None, banned)
        return [
            [
                (self.items[i - 1], float(v))
                for v, i in zip(vals, idx, strict=True)
                if i > 0 and v > float("-inf")
            ]
            for vals, idx in zip(values.tolist(), indices.tolist(), strict=True)
        ]

    @torch.inference_mode()
    def scores_for(self, history: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        """The model's next-item scores of ``item_ids`` after ``history``; NaN for items it does
        not know, and all NaN when it knows none of the history (nothing to personalise on)."""
        out = np.full(len(item_ids), np.nan)
        encoded = self.encode(history)[-self.model.config.max_len :]
        if not len(encoded):
            return out
        scores = self.model.full_sort_scores(torch.from_numpy(encoded).unsqueeze(0))[0].float()
        rows = [(n, self.index[i]) for n, i in enumerate(item_ids) if i in self.index]
        if rows:
            at, columns = zip(*rows, strict=True)
            out[list(at)] = scores[list(columns)].numpy()
        return out

    @torch.no_grad()
    def similar(self, item: str, k: int = 10) -> list[tuple[str, float]]:
        """Items whose vectors are closest (cosine) to ``item``'s; unknown item -> KeyError."""
        if item not in self.index:
            raise KeyError(f"unknown item {item!r}")
        vectors = torch.nn.functional.normalize(self.model.item_vectors().float(), dim=1)
        scores = (vectors @ vectors[self.index[item]]).unsqueeze(0)
        banned = self.unavailable.clone()
        banned[self.index[item]] = True
        values, indices = top_k(scores, k, exclude=banned)
        return [
            (self.items[i - 1], float(v))
            for v, i in zip(values[0].tolist(), indices[0].tolist(), strict=True)
            if i > 0 and v > float("-inf")
        ]
