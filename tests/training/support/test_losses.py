from __future__ import annotations

import pytest
import torch

from training.support.losses import IGNORE_INDEX, listwise_ranking_loss, pointwise_loss, reply_token_loss


def test_reply_token_loss_ignores_prompt_positions():
    torch.manual_seed(0)
    logits = torch.randn(1, 5, 7)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 3, 4, 5]])
    loss = reply_token_loss(logits, labels)
    # Only positions 1..3 predict reply tokens 3, 4, 5; changing position 0's logits changes nothing.
    changed = logits.clone()
    changed[0, 0] += 100
    assert reply_token_loss(changed, labels) == pytest.approx(loss.item())
    expected = torch.nn.functional.cross_entropy(logits[0, 1:4], torch.tensor([3, 4, 5]))
    assert loss.item() == pytest.approx(expected.item())
    changed[0, 2, 4] += 5  # the logit that predicts reply token 4
    assert reply_token_loss(changed, labels) < loss


def test_reply_token_loss_needs_reply_tokens():
    with pytest.raises(ValueError, match="no reply tokens"):
        reply_token_loss(torch.randn(1, 3, 4), torch.full((1, 3), IGNORE_INDEX))


def test_listwise_loss_prefers_the_positive_first():
    good = listwise_ranking_loss(torch.tensor([[5.0, -5.0, -5.0]]))
    bad = listwise_ranking_loss(torch.tensor([[-5.0, 5.0, -5.0]]))
    assert good < 0.1 < bad


def test_pointwise_loss():
    assert pointwise_loss(torch.tensor([5.0]), torch.tensor([0.0])) > pointwise_loss(
        torch.tensor([-5.0]), torch.tensor([0.0])
    )
