"""The sampled losses against hand-computed small cases: logQ-corrected sampled softmax, gBCE."""

from __future__ import annotations

import math

import pytest
import torch

from training.recommender.losses import (
    compute_loss,
    gbce,
    gbce_beta,
    gbce_loss,
    logq_softmax_loss,
    sampled_softmax,
)

E = math.e


def test_logq_softmax_by_hand():
    pos, neg = torch.tensor([1.0]), torch.tensor([[0.0, 2.0]])
    # No correction: -log(e^1 / (e^1 + e^0 + e^2)).
    plain = logq_softmax_loss(pos, neg)
    assert plain.item() == pytest.approx(math.log(E + 1 + E**2) - 1, rel=1e-6)
    # Expected counts K q: 0.5 for the positive, 0.25 and 2 for the negatives. Corrected logits
    # are 1 - log 0.5, 0 - log 0.25, 2 - log 2, i.e. exponentials 2e, 4, e^2 / 2.
    corrected = logq_softmax_loss(
        pos, neg, torch.log(torch.tensor([0.5])), torch.log(torch.tensor([[0.25, 2.0]]))
    )
    assert corrected.item() == pytest.approx(math.log(2 * E + 4 + E**2 / 2) - math.log(2 * E), rel=1e-6)
    # A dropped negative leaves the softmax: -log(e^1 / (e^1 + e^0)).
    dropped = logq_softmax_loss(pos, neg, drop=torch.tensor([[False, True]]))
    assert dropped.item() == pytest.approx(math.log(E + 1) - 1, rel=1e-6)


def test_sampled_softmax_applies_the_proposal_it_draws_from():
    # Item vectors on a line: item i scores i * h. One position, target 1, negatives 2 and 3.
    items = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    hidden = torch.tensor([[[1.0]]])
    targets = torch.tensor([[1]])
    negatives = torch.tensor([2, 3])
    proposal = torch.tensor([0.0, 0.25, 0.25, 0.5])
    loss = sampled_softmax(hidden, items, targets, proposal=proposal, negatives=negatives)
    # K q = 0.5, 0.5, 1.0 for items 1, 2, 3: logits 1 - log 0.5, 2 - log 0.5, 3 - 0.
    expected = -math.log(2 * E / (2 * E + 2 * E**2 + E**3))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # Uniform sampling: one constant correction, so the plain softmax over the sample.
    uniform = sampled_softmax(hidden, items, targets, negatives=negatives)
    assert uniform.item() == pytest.approx(-math.log(E / (E + E**2 + E**3)), rel=1e-6)
    # A negative equal to the target is an accidental hit, dropped from its row.
    hit = sampled_softmax(hidden, items, targets, negatives=torch.tensor([1, 3]))
    assert hit.item() == pytest.approx(-math.log(E / (E + E**3)), rel=1e-6)


def test_sampled_softmax_draws_from_the_proposal():
    proposal = torch.tensor([0.0, 0.0, 1.0, 0.0])  # only item 2 can be drawn
    items = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    g = torch.Generator().manual_seed(0)
    loss = sampled_softmax(
        torch.tensor([[[1.0]]]), items, torch.tensor([[1]]), 4, generator=g, proposal=proposal
    )
    # Four copies of item 2 with K q = 4 each (log 4 off each) and the positive with K q = 0
    # clamped to 1e-12 * 4: the positive dominates completely.
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_gbce_beta_by_hand():
    # 3 items, 1 negative: alpha = 1/2. t = 0.5: beta = 0.5 * (0.5 * (1 - 2) + 2) = 0.75.
    assert gbce_beta(1, 3, 0.5) == pytest.approx(0.75)
    assert gbce_beta(1, 3, 0.0) == pytest.approx(1.0)  # plain BCE
    assert gbce_beta(1, 3, 1.0) == pytest.approx(0.5)  # beta = alpha


def test_gbce_by_hand():
    # Logits 0: -log sigmoid(0) = log 2 for the positive (times beta) and for the negative;
    # the mean over the two terms.
    loss = gbce_loss(torch.tensor([0.0]), torch.tensor([[0.0]]), beta=0.75)
    assert loss.item() == pytest.approx((0.75 + 1.0) * math.log(2) / 2, rel=1e-6)
    # Positive logit 1, negatives 0 and -1, one dropped: (beta log(1 + e^-1) + log 2) / 2.
    loss = gbce_loss(torch.tensor([1.0]), torch.tensor([[0.0, -1.0]]), 0.5, torch.tensor([[False, True]]))
    assert loss.item() == pytest.approx((0.5 * math.log(1 + 1 / E) + math.log(2)) / 2, rel=1e-6)
    # Through the model-facing function: items on a line as above, target 1, negative 2.
    items = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    got = gbce(torch.tensor([[[1.0]]]), items, torch.tensor([[1]]), t=0.5, negatives=torch.tensor([2]))
    beta = gbce_beta(1, 3, 0.5)
    expected = (beta * math.log(1 + 1 / E) + math.log(1 + E**2)) / 2
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_gbce_and_sampled_softmax_train_through_compute_loss():
    torch.manual_seed(0)
    hidden = torch.randn(2, 3, 4, requires_grad=True)
    items = torch.randn(11, 4, requires_grad=True)
    targets = torch.tensor([[1, 2, 0], [4, 5, 6]])
    proposal = torch.full((11,), 0.1)
    proposal[0] = 0.0
    for name, kw in (("gbce", {}), ("sampled_softmax", {"proposal": proposal})):
        loss = compute_loss(name, hidden, items, targets, num_negatives=8, **kw)
        assert torch.isfinite(loss) and loss.item() > 0
        loss.backward()
        assert hidden.grad is not None and torch.isfinite(items.grad).all()
        hidden.grad, items.grad = None, None
