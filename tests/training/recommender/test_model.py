"""The model's shape contract, causality, padding, tied weights, side features, losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.recommender.losses import bce_one_negative, compute_loss, full_softmax_ce, sampled_softmax
from training.recommender.model import RecommenderConfig, SASRec


def tiny(**kw) -> SASRec:
    torch.manual_seed(0)
    return SASRec(
        RecommenderConfig(num_items=20, max_len=8, hidden=32, num_blocks=2, num_heads=2, dropout=0.0, **kw)
    ).eval()


def test_shapes_and_full_sort_scores():
    model = tiny()
    seq = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    assert model(seq).shape == (2, 5, 32)
    scores = model.full_sort_scores(seq)
    assert scores.shape == (2, 21)
    assert torch.isneginf(scores[:, 0]).all()
    # Serving passes the item table it computed once: the same scores.
    with torch.inference_mode():
        table = model.item_vectors()
        assert torch.equal(model.full_sort_scores(seq, table), model.full_sort_scores(seq))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 9, dtype=torch.long))


def test_causal_no_peeking_at_later_items():
    model = tiny()
    a = torch.tensor([[1, 2, 3, 4, 5, 6]])
    b = torch.tensor([[1, 2, 3, 9, 10, 11]])
    ha, hb = model(a), model(b)
    assert torch.allclose(ha[:, :3], hb[:, :3], atol=1e-5)
    assert not torch.allclose(ha[:, 3:], hb[:, 3:], atol=1e-3)


def test_left_padding_does_not_change_the_last_step():
    model = tiny()
    short = torch.tensor([[3, 4, 5]])
    padded = torch.tensor([[0, 0, 0, 3, 4, 5]])
    # Positions count back from the newest item, so both see the same positions.
    assert torch.allclose(model(short)[:, -1], model(padded)[:, -1], atol=1e-5)


def test_output_weights_are_the_item_embeddings():
    model = tiny()
    seq = torch.tensor([[1, 2, 3]])
    h = model(seq)[:, -1]
    expected = h @ model.item_emb.weight.T
    assert torch.allclose(model.full_sort_scores(seq)[:, 1:], expected[:, 1:], atol=1e-5)


def test_text_features_score_an_item_without_an_id_vector():
    model = tiny(text_dim=6)
    text = torch.zeros(21, 6)
    text[5] = torch.tensor([1.0, 0, 0, 0, 0, 0])
    text[7] = torch.tensor([1.0, 0, 0, 0, 0, 0])  # item 7 reads like item 5
    has_id = torch.ones(21, dtype=torch.bool)
    has_id[7] = False  # 7 never appeared in training
    model.set_side_features(text=text, has_id=has_id)
    vectors = model.item_vectors()
    assert torch.allclose(vectors[7], model.text_proj(text[7]), atol=1e-6)
    assert vectors[7].abs().sum() > 0
    with pytest.raises(ValueError, match="disables"):
        tiny().set_side_features(text=text)
    with pytest.raises(ValueError, match="shape"):
        model.set_side_features(text=torch.zeros(3, 6))


def test_category_and_price_features_add_to_the_item_vector():
    model = tiny(num_categories=3, num_price_buckets=4)
    cat = torch.zeros(21, dtype=torch.long)
    cat[2] = 1
    model.set_side_features(category=cat)
    before = model.item_emb.weight[2] + model.price_emb.weight[0]
    assert torch.allclose(model.item_vectors()[2], before + model.cat_emb.weight[1], atol=1e-6)


def test_several_categories_per_item_add_their_mean_and_old_single_category_models_load():
    model = tiny(num_categories=4, category_slots=3)
    cat = torch.zeros(21, 3, dtype=torch.long)
    cat[2] = torch.tensor([1, 3, 0])  # two categories and an empty slot
    cat[5, 0] = 4
    model.set_side_features(category=cat)
    vectors = model.item_vectors()
    mean = (model.cat_emb.weight[1] + model.cat_emb.weight[3]) / 2
    assert torch.allclose(vectors[2], model.item_emb.weight[2] + mean, atol=1e-6)
    assert torch.allclose(vectors[5], model.item_emb.weight[5] + model.cat_emb.weight[4], atol=1e-6)
    assert torch.allclose(vectors[7], model.item_emb.weight[7], atol=1e-6)  # no category
    # A model saved with one category per item (a 1-D buffer) loads into the slotted shape.
    single = tiny(num_categories=4)
    state = single.state_dict()
    state["item_category"] = torch.arange(21) % 5
    single.load_state_dict(state)
    assert single.item_category.shape == (21, 1) and single.item_category[3, 0] == 3


def test_full_softmax_ce_matches_manual_and_ignores_padding():
    torch.manual_seed(0)
    hidden = torch.randn(2, 3, 4)
    items = torch.randn(6, 4)
    targets = torch.tensor([[0, 2, 3], [1, 0, 5]])
    logits = hidden.reshape(-1, 4) @ items.T
    logits[:, 0] = float("-inf")
    keep = targets.reshape(-1) > 0
    manual = F.cross_entropy(logits[keep], targets.reshape(-1)[keep])
    assert full_softmax_ce(hidden, items, targets).item() == pytest.approx(manual.item(), rel=1e-5)
    assert compute_loss("ce", hidden, items, targets).item() == pytest.approx(manual.item(), rel=1e-5)


def test_excluded_items_take_no_part_in_the_softmax_and_get_no_gradient():
    torch.manual_seed(0)
    hidden = torch.randn(2, 3, 4)
    items = torch.randn(6, 4, requires_grad=True)
    targets = torch.tensor([[0, 2, 3], [1, 0, 2]])
    excluded = torch.tensor([False, False, False, False, True, True])
    logits = hidden.reshape(-1, 4) @ items[:4].T
    logits[:, 0] = float("-inf")
    keep = targets.reshape(-1) > 0
    manual = F.cross_entropy(logits[keep], targets.reshape(-1)[keep])
    loss = full_softmax_ce(hidden, items, targets, excluded)
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    assert loss.item() < full_softmax_ce(hidden, items, targets).item()
    loss.backward()
    assert items.grad[4:].abs().sum() == 0 and items.grad[1:4].abs().sum() > 0
    g = torch.Generator().manual_seed(0)
    sampled = sampled_softmax(hidden, items.detach(), targets, 200, generator=g, excluded=excluded)
    g = torch.Generator().manual_seed(0)
    assert sampled < sampled_softmax(hidden, items.detach(), targets, 200, generator=g)


def test_sampled_softmax_with_every_item_as_negative_equals_full_ce_within_sampling():
    torch.manual_seed(0)
    hidden = torch.randn(2, 3, 4)
    items = torch.randn(6, 4)
    targets = torch.tensor([[1, 2, 3], [4, 5, 1]])
    # Negatives that equal the target are masked; with many draws it approaches the full CE.
    g = torch.Generator().manual_seed(0)
    sampled = sampled_softmax(hidden, items, targets, num_negatives=5000, generator=g)
    full = full_softmax_ce(hidden, items, targets)
    assert sampled.item() > full.item()  # duplicates of negatives only add mass
    assert sampled.item() == pytest.approx(full.item() + 0.0, abs=8.0)
    assert torch.isfinite(sampled)


def test_bce_one_negative_is_low_when_positives_score_high():
    items = torch.eye(4) * 10
    hidden = items[torch.tensor([[1, 2, 3]])]  # each position points at its own target
    targets = torch.tensor([[1, 2, 3]])
    g = torch.Generator().manual_seed(0)
    good = bce_one_negative(hidden, items, targets, generator=g)
    bad = bce_one_negative(-hidden, items, targets, generator=torch.Generator().manual_seed(0))
    assert good.item() < bad.item()
    with pytest.raises(ValueError, match="unknown loss"):
        compute_loss("nope", hidden, items, targets)  # type: ignore[arg-type]


def test_config_round_trip_rejects_unknown_fields():
    config = RecommenderConfig(num_items=5, hidden=32)
    assert RecommenderConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        RecommenderConfig.from_dict({**config.to_dict(), "colour": "red"})


@pytest.mark.parametrize("block_elements", [1 << 20, 11, 40])  # one block; one row; 3 rows
def test_full_softmax_ce_gradients_match_autograd(monkeypatch, block_elements):
    from training.recommender import losses

    monkeypatch.setitem(losses._BLOCK_ELEMENTS, "cpu", block_elements)
    torch.manual_seed(1)
    hidden = torch.randn(3, 5, 8, requires_grad=True)
    items = torch.randn(11, 8, requires_grad=True)
    targets = torch.randint(0, 11, (3, 5))
    with torch.no_grad():
        no_grad_loss = full_softmax_ce(hidden, items, targets)
    loss = full_softmax_ce(hidden, items, targets)
    assert loss.item() == pytest.approx(no_grad_loss.item(), rel=1e-6)
    loss.backward()
    fused = hidden.grad.clone(), items.grad.clone()
    hidden.grad = items.grad = None
    keep = targets > 0
    logits = hidden[keep] @ items.T
    logits = logits.masked_fill(torch.arange(11) == 0, float("-inf"))
    F.cross_entropy(logits, targets[keep]).backward()
    assert torch.allclose(fused[0], hidden.grad, atol=1e-5)
    assert torch.allclose(fused[1], items.grad, atol=1e-5)


def test_id_dropout_hides_id_vectors_only_in_training_with_text():
    model = tiny(text_dim=4, id_dropout=1.0)
    model.train()
    # Every id vector hidden: only the (zero) text projection is left.
    assert torch.count_nonzero(model.item_vectors()) == 0
    model.eval()
    assert torch.count_nonzero(model.item_vectors()[1:]) > 0
    plain = tiny(id_dropout=1.0).train()  # no text: id vectors are all there is
    assert torch.count_nonzero(plain.item_vectors()[1:]) > 0


def test_training_step_keeps_items_without_interactions_out_of_the_softmax():
    from training.recommender.lightning import SASRecModule

    model = tiny().train()
    has_id = torch.ones(21, dtype=torch.bool)
    has_id[[7, 8]] = False
    model.set_side_features(has_id=has_id)
    module = SASRecModule(model)
    module.on_fit_start()
    batch = {
        "seq": torch.tensor([[0, 1, 2, 3], [4, 5, 6, 9]]),
        "targets": torch.tensor([[2, 3, 4, 5], [5, 6, 9, 10]]),
    }
    torch.manual_seed(0)
    loss = module.training_step(batch, 0)
    torch.manual_seed(0)
    hidden, items = model(batch["seq"]), model.item_vectors()
    assert loss.item() == pytest.approx(
        full_softmax_ce(hidden, items, batch["targets"], ~has_id).item(), rel=1e-5
    )
    assert loss.item() < full_softmax_ce(hidden, items, batch["targets"]).item()

    model.set_side_features(has_id=torch.ones(21, dtype=torch.bool))
    module.on_fit_start()
    assert module._excluded is None  # every item has interactions: no masking pass


@pytest.mark.parametrize("max_len", [5, 8, 20])
def test_traced_scorer_scores_as_the_model_at_every_length(max_len):
    from training.recommender.inference import TracedScorer

    torch.manual_seed(0)
    config = RecommenderConfig(
        num_items=20, max_len=max_len, hidden=32, num_blocks=2, num_heads=2, num_categories=3, dropout=0.3
    )
    model = SASRec(config).eval()
    model.set_side_features(category=torch.randint(0, 4, (21,)))
    with torch.inference_mode():
        table = model.item_vectors()
    traced = TracedScorer(model, table)
    assert traced.buckets[-1] == max_len and all(b <= max_len for b in traced.buckets)
    gen = torch.Generator().manual_seed(1)
    for length in range(1, max_len + 1):
        history = torch.randint(1, 21, (length,), generator=gen).numpy()
        with torch.inference_mode():
            eager = model.full_sort_scores(torch.from_numpy(history).unsqueeze(0), table)
            got = traced(history)
        assert got.shape == (1, 21) and torch.isneginf(got[0, 0])
        torch.testing.assert_close(got[:, 1:], eager[:, 1:], atol=1e-5, rtol=1e-5)
    # The check the service runs at load sees a trace that scores unlike the model.
    assert traced.check(model, table, [history]) < 1e-5
    other = SASRec(config).eval()
    other.set_side_features(category=torch.randint(0, 4, (21,)))
    assert traced.check(other, table, [history]) > 1e-4


def test_the_prior_adds_decayed_follower_counts_by_hand():
    model = tiny()
    items = torch.zeros(21, 2, dtype=torch.long)
    counts = torch.zeros(21, 2)
    items[3], counts[3] = torch.tensor([7, 9]), torch.tensor([2.0, 1.0])  # after 3: 7 twice, 9 once
    items[5], counts[5] = torch.tensor([9, 0]), torch.tensor([4.0, 0.0])  # after 5: 9 four times
    seq = torch.tensor([[0, 0, 3, 4, 5], [0, 0, 0, 0, 3]])
    learned = model.full_sort_scores(seq)
    model.set_prior(items, counts, weight=0.0, recent=3, decay=0.5)
    assert torch.equal(model.full_sort_scores(seq), learned)  # weight 0: the model alone
    prior = model.prior_scores(seq)
    # Row 0: 5 is newest (weight 1), 4 has no followers, 3 is two steps older (weight 0.25).
    assert prior[0, 9].item() == pytest.approx(4.0 + 0.25 * 1.0)
    assert prior[0, 7].item() == pytest.approx(0.25 * 2.0)
    # Row 1: a one-item history; the padding before it adds nothing.
    assert prior[1, 7].item() == pytest.approx(2.0) and prior[1, 9].item() == pytest.approx(1.0)
    assert prior[:, [1, 2, 3, 4, 5, 6, 8]].abs().sum() == 0
    model.config.prior_weight = 2.0
    got = model.full_sort_scores(seq)
    torch.testing.assert_close(got[:, 1:], learned[:, 1:] + 2.0 * prior[:, 1:])
    # A window narrower than ``recent`` (an unpadded one-item history) scores the same.
    torch.testing.assert_close(model.full_sort_scores(seq[1:, -1:])[:, 1:], got[1:, 1:])
    with pytest.raises(ValueError, match="prior tables"):
        model.set_prior(items[:5], counts[:5], 1.0, 3, 0.5)


def test_the_ease_prior_adds_every_history_items_weights_by_hand():
    model = tiny()
    items = torch.zeros(21, 2, dtype=torch.long)
    values = torch.zeros(21, 2)
    items[3], values[3] = torch.tensor([7, 9]), torch.tensor([1.5, 0.5])
    items[5], values[5] = torch.tensor([9, 0]), torch.tensor([2.0, 0.0])
    seq = torch.tensor([[0, 3, 4, 5, 6, 8, 10, 11]])  # 3 is the oldest of eight: still read
    learned = model.full_sort_scores(seq)
    model.set_ease_prior(items, values, weight=0.0)
    assert torch.equal(model.full_sort_scores(seq), learned)  # weight 0: the model alone
    model.config.ease_prior_weight = 2.0
    got = model.full_sort_scores(seq)
    expected = learned.clone()
    expected[0, 7] += 2.0 * 1.5
    expected[0, 9] += 2.0 * (0.5 + 2.0)  # no decay: old and new items weigh the same
    torch.testing.assert_close(got[:, 1:], expected[:, 1:])
    with pytest.raises(ValueError, match="prior tables"):
        model.set_ease_prior(items[:5], values[:5], 1.0)


def test_traced_scorer_scores_the_prior_as_the_model_does():
    from training.recommender.inference import TracedScorer

    model = tiny()
    gen = torch.Generator().manual_seed(0)
    model.set_prior(
        torch.randint(0, 21, (21, 4), generator=gen), torch.rand(21, 4, generator=gen), 3.0, 3, 0.6
    )
    model.set_ease_prior(torch.randint(0, 21, (21, 3), generator=gen), torch.rand(21, 3, generator=gen), 2.0)
    with torch.inference_mode():
        table = model.item_vectors()
    traced = TracedScorer(model, table)
    for length in (1, 2, 5, 8):
        history = torch.randint(1, 21, (length,), generator=gen).numpy()
        with torch.inference_mode():
            eager = model.full_sort_scores(torch.from_numpy(history).unsqueeze(0), table)
        torch.testing.assert_close(traced(history)[:, 1:], eager[:, 1:], atol=1e-5, rtol=1e-5)
