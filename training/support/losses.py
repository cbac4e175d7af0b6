"""Losses of the support model's trainable stages."""

from __future__ import annotations

import torch
from torch.nn import functional as F

IGNORE_INDEX = -100


def reply_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy on the reply tokens only (prompt tokens are IGNORE_INDEX).

    logits: (B, T, V) for positions 0..T-1; labels: (B, T) with the token at each position.
    """
    shifted_logits = logits[:, :-1].reshape(-1, logits.size(-1))  # predicts token t+1
    shifted_labels = labels[:, 1:].reshape(-1)
    if (shifted_labels != IGNORE_INDEX).sum() == 0:
        raise ValueError("no reply tokens in the batch (every label is masked)")
    return F.cross_entropy(shifted_logits.float(), shifted_labels, ignore_index=IGNORE_INDEX)


def listwise_ranking_loss(scores: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of groups whose first candidate is the right one, plus a pointwise
    BCE on every pair so that sigmoid(score) is a probability the handover threshold can use.

    scores: (G, C) logits, column 0 the positive.
    """
    target = torch.zeros(scores.size(0), dtype=torch.long, device=scores.device)
    labels = torch.zeros_like(scores)
    labels[:, 0] = 1.0
    return F.cross_entropy(scores, target) + F.binary_cross_entropy_with_logits(scores, labels)


def pointwise_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE of single (context, reply) pairs, e.g. thumbs up (1) and thumbs down (0)."""
    return F.binary_cross_entropy_with_logits(scores, labels.to(scores.dtype))
