"""Scoring and top-k with exclusions, shared by the evaluation and the serving layer."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from training.recommender.data import left_pad
from training.recommender.model import SASRec

log = logging.getLogger(__name__)


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
        # Set by prepare_for_serving().
        self.item_table: torch.Tensor | None = None
        self.unit_vectors: torch.Tensor | None = None
        self.traced: TracedScorer | None = None
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
        return self._top(scores, k, banned)

    def _top(self, scores: torch.Tensor, k: int, banned: torch.Tensor, seen=None) -> list[tuple[str, float]]:
        """(item id, score) of the k best of one row of scores, ``banned`` and ``seen`` left out."""
        values, indices = top_k(scores, k, seen, banned)
        return [
            (self.items[i - 1], v)
            for v, i in zip(values[0].tolist(), indices[0].tolist(), strict=True)
            if i > 0 and v > float("-inf")
        ]

    # --- serving: one request at a time, what every request reuses computed once -------------

    def prepare_for_serving(self) -> None:
        """The item table (computed per call it was a tenth of a worker's CPU at 200 requests
        per second), its unit vectors for neighbours and, for a trained model, the traces."""
        with torch.inference_mode():
            self.item_table = self.model.item_vectors()
            self.unit_vectors = torch.nn.functional.normalize(self.item_table.float(), dim=1)
        self.traced = self._traced_scorer()
        # One forward pass now, so the first request does not pay for the allocations.
        self.serve_top(self.items[:1], 1, self.unavailable, True)

    def _traced_scorer(self) -> TracedScorer | None:
        """Traces that score as the model does, else None (the eager model serves: slower,
        never different)."""
        if not isinstance(self.model, SASRec):
            return None  # a promoted baseline: a lookup, nothing to trace
        try:
            traced = TracedScorer(self.model, self.item_table)
            rng = np.random.default_rng(0)
            lengths = {min(n, self.model.config.max_len) for n in (1, 7, 33, self.model.config.max_len)}
            probes = [rng.integers(1, len(self.items) + 1, n) for n in sorted(lengths)]
            worst = traced.check(self.model, self.item_table, probes)
        except Exception as e:  # a model the tracer cannot follow still serves, eagerly
            log.warning("recommender model not traced (%s); serving it eagerly", e)
            return None
        if worst > 1e-3:
            log.warning("traced recommender differs from the model by %.3g; serving it eagerly", worst)
            return None
        return traced

    def serve_top(
        self, history: Sequence[str], k: int, banned: torch.Tensor, exclude_seen: bool
    ) -> list[tuple[str, float]]:
        """The top k after one history (a few milliseconds of CPU), ``banned`` (N+1,) left out."""
        encoded = self.encode(history)[-self.model.config.max_len :]
        # Positions are right-aligned and padding is masked, so a history padded to its trace's
        # length bucket (or unpadded, eagerly) scores the same as score_histories' max_len one.
        with torch.inference_mode():
            if self.traced is not None:
                scores = self.traced(encoded).float()
            else:
                scores = self.model.full_sort_scores(
                    torch.from_numpy(encoded).unsqueeze(0), self.item_table
                ).float()
        return self._top(scores, k, banned, [encoded] if exclude_seen else None)

    def serve_neighbours(self, item: str, k: int, banned: torch.Tensor) -> list[tuple[str, float]]:
        """Cosine neighbours of a known item's vector, ``banned`` (N+1,) and the item left out."""
        index = self.index[item]
        scores = (self.unit_vectors @ self.unit_vectors[index]).unsqueeze(0)
        banned = banned.clone()
        banned[index] = True
        return self._top(scores, k, banned)


class TracedScorer:
    """Next-item scores of one history through TorchScript traces of the model, for serving.

    A forward pass on one short history is about fifty small torch ops, and Python's dispatch
    of each costs more than its arithmetic: a trace runs the same ops without it (0.56 against
    1.4 ms per call for the quick profile's shape on one core here). A trace is fixed-shape, so
    there is one per length bucket (8, 16, 32, ... up to ``max_len``) and a history is
    left-padded to the smallest bucket that holds it. Padding is masked and positions are
    right-aligned, so the scores are the eager model's; ``check`` compares them at load.
    """

    def __init__(self, model: SASRec, item_table: torch.Tensor) -> None:
        import warnings

        self.max_len = model.config.max_len
        self.buckets = sorted({min(2**p, self.max_len) for p in range(3, 16) if 2 ** (p - 1) < self.max_len})
        self._traces = {}
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            wrapper = _ScoresWithTable(model.eval(), item_table)
            # The trace records shape arithmetic as constants: right for its one length.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            for length in self.buckets:
                probe = torch.ones(1, length, dtype=torch.long)
                self._traces[length] = torch.jit.trace(wrapper, probe, check_trace=False)

    def bucket(self, length: int) -> int:
        return next(b for b in self.buckets if b >= length)

    def __call__(self, encoded: np.ndarray) -> torch.Tensor:
        """(T,) item indices (at most max_len) -> (1, N+1) scores; column 0 is -inf."""
        length = self.bucket(max(len(encoded), 1))
        seq = torch.from_numpy(left_pad([encoded], length))
        return self._traces[length](seq)

    def check(self, model: SASRec, item_table: torch.Tensor, histories: Sequence[np.ndarray]) -> float:
        """Largest difference from the eager model's scores over ``histories``."""
        worst = 0.0
        with torch.no_grad():
            for history in histories:
                eager = model.full_sort_scores(torch.from_numpy(np.asarray(history)).unsqueeze(0), item_table)
                traced = self(np.asarray(history))
                worst = max(worst, float((traced[:, 1:] - eager[:, 1:]).abs().max()))
        return worst


class _ScoresWithTable(torch.nn.Module):
    def __init__(self, model: SASRec, item_table: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        # A plain copy: the caller's table may be an inference-mode tensor, which a trace
        # cannot hold.
        self.register_buffer("item_table", item_table.detach().clone(), persistent=False)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.model.full_sort_scores(seq, self.item_table)
