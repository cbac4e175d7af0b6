"""Training losses for next-item prediction, all over tied item vectors.

Each takes the sequence representations ``hidden`` (B, T, C), the item table ``items``
(N+1, C) with row 0 = padding, and ``targets`` (B, T) with 0 where there is no target.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

LossName = Literal["ce", "sampled_softmax", "gbce", "bce"]
LOSSES: tuple[LossName, ...] = ("ce", "sampled_softmax", "gbce", "bce")
# How the sampled losses draw their negatives: uniformly over the catalogue, or in
# proportion to ``proposal`` (e.g. training popularity), corrected by logQ in the softmax.
Sampling = Literal["uniform", "popularity"]


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


def draw_negatives(
    num_items: int,
    num_negatives: int,
    device: torch.device,
    proposal: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(K,) negatives shared by the batch: uniform over 1..num_items, or drawn (with
    replacement) from ``proposal`` (N+1,) probabilities, whose row 0 must be 0."""
    if proposal is None:
        return torch.randint(1, num_items + 1, (num_negatives,), device=device, generator=generator)
    return torch.multinomial(proposal, num_negatives, replacement=True, generator=generator).to(device)


def _positive_and_negative_logits(
    hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(M,) positive logits, (M, K) negative logits, (M, K) accidental hits (negative = target)."""
    mask = targets > 0
    h = hidden[mask]  # (M, C): only positions with a target
    pos = targets[mask]  # (M,)
    pos_logit = (h * items[pos]).sum(-1)  # (M,)
    neg_logit = h @ items[negatives].T  # (M, K): one matmul for the shared negatives
    return pos_logit.float(), neg_logit.float(), negatives.unsqueeze(0) == pos.unsqueeze(1)


def logq_softmax_loss(
    pos_logit: torch.Tensor,
    neg_logit: torch.Tensor,
    log_q_pos: torch.Tensor | float = 0.0,
    log_q_neg: torch.Tensor | float = 0.0,
    drop: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over rows of the cross-entropy of the positive among [positive, negatives], each
    logit corrected by minus log of its expected count in the sample (logQ correction, as in
    TensorFlow's ``sampled_softmax_loss`` and Yi et al., 2019): s - log(K q). ``drop`` (M, K)
    removes negatives from a row (accidental hits, excluded items)."""
    pos = pos_logit - log_q_pos  # (M,)
    neg = neg_logit - log_q_neg  # (M, K)
    if drop is not None:
        neg = neg.masked_fill(drop, float("-inf"))
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=logits.device))


def sampled_softmax(
    hidden: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    num_negatives: int = 256,
    generator: torch.Generator | None = None,
    excluded: torch.Tensor | None = None,
    proposal: torch.Tensor | None = None,
    negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax over the target and ``num_negatives`` negatives shared by the batch (SASRec+SS).

    Shared negatives keep the cost at one (M, K) matmul; a negative that equals the target
    of a row, or is ``excluded``, is masked out of that row. Negatives come from
    ``proposal`` (N+1,) when given, uniform otherwise, and every logit is logQ-corrected
    (under uniform sampling the correction is one constant and changes nothing).
    ``negatives`` (K,) fixes the draw (tests).
    """
    num_items = items.shape[0] - 1
    if negatives is None:
        negatives = draw_negatives(num_items, num_negatives, hidden.device, proposal, generator)
    pos_logit, neg_logit, drop = _positive_and_negative_logits(hidden, items, targets, negatives)
    if excluded is not None:
        drop = drop | excluded[negatives].unsqueeze(0)
    k = len(negatives)
    if proposal is None:
        log_q_pos = log_q_neg = torch.log(torch.tensor(k / num_items))
    else:
        log_q = torch.log(k * proposal.to(hidden.device).float().clamp_min(1e-12))
        log_q_pos, log_q_neg = log_q[targets[targets > 0]], log_q[negatives].unsqueeze(0)
    return logq_softmax_loss(pos_logit, neg_logit, log_q_pos, log_q_neg, drop)


def gbce_beta(num_negatives: int, num_items: int, t: float) -> float:
    """gSASRec's exponent: beta = alpha (t (1 - 1/alpha) + 1/alpha), alpha = K / (N - 1).

    t = 0 gives beta = 1 (plain BCE, overconfident), t = 1 gives beta = alpha (fully
    calibrated to the sampling rate)."""
    alpha = num_negatives / max(num_items - 1, 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


def gbce_loss(
    pos_logit: torch.Tensor, neg_logit: torch.Tensor, beta: float, drop: torch.Tensor | None = None
) -> torch.Tensor:
    """Generalised BCE (Petrov and Macdonald, 2023): the positive's probability is raised to
    ``beta``, -log(sigmoid(s+)^beta) = -beta log sigmoid(s+); each negative adds -log(1 -
    sigmoid(s-)). As in gSASRec, the mean over every (row, 1 + K) term; ``drop`` (M, K)
    removes negatives from a row."""
    pos_terms = -beta * F.logsigmoid(pos_logit)  # (M,)
    neg_terms = -F.logsigmoid(-neg_logit)  # (M, K)
    if drop is not None:
        neg_terms = neg_terms.masked_fill(drop, 0.0)
        count = len(pos_terms) + (~drop).sum()
    else:
        count = neg_terms.numel() + len(pos_terms)
    return (pos_terms.sum() + neg_terms.sum()) / count


def gbce(
    hidden: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    num_negatives: int = 256,
    t: float = 0.75,
    generator: torch.Generator | None = None,
    excluded: torch.Tensor | None = None,
    negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """gBCE over ``num_negatives`` uniform negatives per sequence (gSASRec), calibration ``t``.

    Unlike the softmax, BCE does not normalise over items, so negatives shared by the whole
    batch concentrate every position's push-down on a few items: on the tests' rule data
    that stalled learning (NDCG@10 0.25 against 0.68 with negatives per sequence). One
    (B, T, K) batched matmul scores each sequence's own negatives. ``negatives`` (B, K) or
    (K,) fixes the draw (tests).
    """
    B = hidden.shape[0]
    num_items = items.shape[0] - 1
    if negatives is None:
        negatives = torch.randint(
            1, num_items + 1, (B, num_negatives), device=hidden.device, generator=generator
        )
    negatives = negatives.expand(B, -1) if negatives.dim() == 1 else negatives  # (B, K)
    mask = targets > 0
    pos_logit = (hidden * items[targets]).sum(-1)[mask].float()  # (M,)
    neg_logit = torch.bmm(hidden, items[negatives].transpose(1, 2))[mask].float()  # (M, K)
    drop = negatives.unsqueeze(1) == targets.unsqueeze(2)  # (B, T, K): accidental hits
    if excluded is not None:
        drop = drop | excluded[negatives].unsqueeze(1)
    beta = gbce_beta(negatives.shape[1], num_items, t)
    return gbce_loss(pos_logit, neg_logit, beta, drop[mask])


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
    proposal: torch.Tensor | None = None,
    gbce_t: float = 0.75,
) -> torch.Tensor:
    """``excluded`` items take no part in the softmax losses (the BCE baseline ignores it);
    ``proposal`` is the sampled softmax's negative distribution (None: uniform)."""
    if name == "ce":
        return full_softmax_ce(hidden, items, targets, excluded)
    if name == "sampled_softmax":
        return sampled_softmax(hidden, items, targets, num_negatives, excluded=excluded, proposal=proposal)
    if name == "gbce":
        return gbce(hidden, items, targets, num_negatives, t=gbce_t, excluded=excluded)
    if name == "bce":
        return bce_one_negative(hidden, items, targets)
    raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
