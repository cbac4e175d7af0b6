"""Training losses for next-item prediction, all over tied item vectors.

Each takes the sequence representations ``hidden`` (B, T, C), the item table ``items``
(N+1, C) with row 0 = padding, and ``targets`` (B, T) with 0 where there is no target.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

LossName = Literal["ce", "sampled_softmax", "bce"]


def full_softmax_ce(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the whole catalogue (the strongest published SASRec variant)."""
    mask = targets > 0
    h = hidden[mask]  # (M, C): only positions with a target
    logits = h @ items.T  # (M, N+1)
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits.float(), targets[mask])


def sampled_softmax(
    hidden: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    num_negatives: int = 256,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Softmax over the target and ``num_negatives`` uniform negatives shared by the batch.

    Shared negatives keep the cost at one (M, K) matmul; a negative that equals the target
    of a row is masked out of that row.
    """
    mask = targets > 0
    h = hidden[mask]  # (M, C)
    pos = targets[mask]  # (M,)
    num_items = items.shape[0] - 1
    neg = torch.randint(1, num_items + 1, (num_negatives,), device=h.device, generator=generator)
    pos_logit = (h * items[pos]).sum(-1, keepdim=True)  # (M, 1)
    neg_logit = h @ items[neg].T  # (M, K)
    neg_logit = neg_logit.masked_fill(neg.unsqueeze(0) == pos.unsqueeze(1), float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], dim=1).float()
    return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=h.device))


def bce_one_negative(
    hidden: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The original SASRec loss: one uniform negative per position, binary cross-entropy."""
    mask = targets > 0
    h = hidden[mask]
    pos = targets[mask]
    num_items = items.shape[0] - 1
    neg = torch.randint(1, num_items + 1, pos.shape, device=h.device, generator=generator)
    pos_logit = (h * items[pos]).sum(-1).float()
    neg_logit = (h * items[neg]).sum(-1).float()
    return F.binary_cross_entropy_with_logits(
        pos_logit, torch.ones_like(pos_logit)
    ) + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit))


def compute_loss(
    name: LossName,
    hidden: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    num_negatives: int = 256,
) -> torch.Tensor:
    if name == "ce":
        return full_softmax_ce(hidden, items, targets)
    if name == "sampled_softmax":
        return sampled_softmax(hidden, items, targets, num_negatives)
    if name == "bce":
        return bce_one_negative(hidden, items, targets)
    raise ValueError(f"unknown loss {name!r}; expected one of ce, sampled_softmax, bce")
