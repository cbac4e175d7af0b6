"""Training losses for next-item prediction, all over tied item vectors.

Each takes the sequence representations ``hidden`` (B, T, C), the item table ``items``
(N+1, C) with row 0 = padding, and ``targets`` (B, T) with 0 where there is no target.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

LossName = Literal["ce", "sampled_softmax", "bce"]


# Logits per row block of the full softmax: a CPU block stays in cache through the matmul,
# the softmax and both gradient matmuls; a GPU block is large enough to keep the chip busy.
# Either way a catalogue-wide (rows, N) matrix never exists at once.
_BLOCK_ELEMENTS = {"cpu": 1 << 20, "cuda": 1 << 28}


def _block_rows(num_items: int, device: torch.device) -> int:
    return max(1, _BLOCK_ELEMENTS.get(device.type, 1 << 24) // num_items)


class _FullSoftmaxCE(torch.autograd.Function):
    """Mean cross-entropy of ``h @ items.T``, its gradient computed in the forward pass.

    The loss is a scalar, so once a row's softmax is known its gradient is too
    ((softmax - one_hot) / M, times the incoming gradient). Doing the rows in blocks keeps
    every catalogue-wide pass in cache: on a 2-core CPU the unblocked (M, N) passes were
    memory-bound (a logsumexp over 12,800 x 3,417 took 124 ms, the same work in cache-sized
    blocks 25 ms), and the loss is a large share of a training step.
    """

    @staticmethod
    def forward(
        ctx, h: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, excluded: torch.Tensor | None
    ) -> torch.Tensor:
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        grad_h = torch.empty_like(h) if want_grad else None
        grad_items = torch.zeros(items.shape, dtype=torch.float32, device=items.device) if want_grad else None
        step = _block_rows(items.shape[0], h.device)
        for start in range(0, len(h), step):
            hb, tb = h[start : start + step], targets[start : start + step]
            logits = (hb @ items.T).float()  # (rows, N+1)
            if excluded is not None:
                logits.masked_fill_(excluded, float("-inf"))
            logits[:, 0] = float("-inf")
            rows = torch.arange(len(tb), device=h.device)
            lse = torch.logsumexp(logits, dim=1)
            total += (lse - logits[rows, tb]).sum()
            if want_grad:
                probs = logits.sub_(lse.unsqueeze(1)).exp_()  # in place: logits are done with
                probs[rows, tb] -= 1.0
                dlogits = probs.to(hb.dtype)
                grad_h[start : start + step] = dlogits @ items
                grad_items += dlogits.T @ hb
        ctx.save_for_backward(grad_h, grad_items)
        ctx.items_dtype = items.dtype
        return total / len(h)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad_h, grad_items = ctx.saved_tensors
        scale = grad / len(grad_h)
        return grad_h * scale, (grad_items * scale).to(ctx.items_dtype), None, None


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
