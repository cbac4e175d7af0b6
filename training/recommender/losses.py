"""Training losses for next-item prediction, all over tied item vectors.

Each takes the sequence representations ``hidden`` (B, T, C), the item table ``items``
(N+1, C) with row 0 = padding, and ``targets`` (B, T) with 0 where there is no target.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

LossName = Literal["ce", "sampled_softmax", "bce"]


class _FullSoftmaxCE(torch.autograd.Function):
    """Mean cross-entropy of ``h @ items.T`` without keeping log-probabilities.

    Autograd's path stores the logits, the log-softmax and a zero-filled gradient, each
    (M, N+1); here the softmax is computed in place and becomes its own gradient
    (softmax - one_hot), so the catalogue-wide matrices are made once. On a CPU the loss
    is most of a training step, so this is worth the few lines.
    """

    @staticmethod
    def forward(
        ctx, h: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, excluded: torch.Tensor | None
    ) -> torch.Tensor:
        logits = (h @ items.T).float()  # (M, N+1)
        if excluded is not None:
            logits.masked_fill_(excluded, float("-inf"))
        logits[:, 0] = float("-inf")
        rows = torch.arange(len(targets), device=h.device)
        target_logit = logits[rows, targets]
        lse = torch.logsumexp(logits, dim=1)
        probs = logits.sub_(lse.unsqueeze(1)).exp_()  # in place: logits are no longer needed
        ctx.save_for_backward(h, items, targets, probs)
        return (lse - target_logit).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, items, targets, probs = ctx.saved_tensors
        rows = torch.arange(len(targets), device=h.device)
        probs[rows, targets] -= 1.0
        probs.mul_(grad / len(targets))
        dlogits = probs.to(h.dtype)
        return dlogits @ items, dlogits.T @ h, None, None


def full_softmax_ce(
    hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, excluded: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy over the whole catalogue (the strongest published SASRec variant).

    ``excluded`` (N+1,) bool: items left out of the softmax, e.g. those without training
    interactions, which would otherwise only ever be pushed down as negatives.
    """
    mask = targets > 0
    h = hidden[mask]  # (M, C): only positions with a target
    if h.shape[0] == 0:
        return hidden.sum() * 0.0
    return _FullSoftmaxCE.apply(h, items, targets[mask], excluded)


def sampled_softmax(
    hidden: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    num_negatives: int = 256,
    generator: torch.Generator | None = None,
    excluded: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax over the target and ``num_negatives`` uniform negatives shared by the batch.

    Shared negatives keep the cost at one (M, K) matmul; a negative that equals the target
    of a row, or is ``excluded``, is masked out of that row.
    """
    mask = targets > 0
    h = hidden[mask]  # (M, C)
    pos = targets[mask]  # (M,)
    num_items = items.shape[0] - 1
    neg = torch.randint(1, num_items + 1, (num_negatives,), device=h.device, generator=generator)
    pos_logit = (h * items[pos]).sum(-1, keepdim=True)  # (M, 1)
    neg_logit = h @ items[neg].T  # (M, K)
    drop = neg.unsqueeze(0) == pos.unsqueeze(1)
    if excluded is not None:
        drop = drop | excluded[neg].unsqueeze(0)
    neg_logit = neg_logit.masked_fill(drop, float("-inf"))
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
    excluded: torch.Tensor | None = None,
) -> torch.Tensor:
    """``excluded`` items take no part in the softmax losses (the BCE baseline ignores it)."""
    if name == "ce":
        return full_softmax_ce(hidden, items, targets, excluded)
    if name == "sampled_softmax":
        return sampled_softmax(hidden, items, targets, num_negatives, excluded=excluded)
    if name == "bce":
        return bce_one_negative(hidden, items, targets)
    raise ValueError(f"unknown loss {name!r}; expected one of ce, sampled_softmax, bce")
