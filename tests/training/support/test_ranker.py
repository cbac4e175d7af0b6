from __future__ import annotations

import copy
import random
from dataclasses import replace

import polars as pl
import torch

from data_contracts.schemas import SUPPORT_FEEDBACK_SCHEMA
from training.support.ranker import CrossEncoder, negative_pool, sample_negatives, train_ranker


def test_hard_negatives_come_from_other_intents_of_the_same_category(sample_corpus):
    qa = sample_corpus.qa
    pool = negative_pool(qa)
    rng = random.Random(0)
    negatives = sample_negatives(pool, "ORDER", "cancel_order", 5, rng)
    order_answers = set(
        qa.filter((pl.col("category") == "ORDER") & (pl.col("intent") != "cancel_order"))["answer"]
    )
    assert len(negatives) == 5 and set(negatives) <= order_answers
    # a category with a single intent borrows negatives from other categories
    single = sample_negatives(pool, "NEWSLETTER", "newsletter_subscription", 3, rng)
    newsletter = set(qa.filter(pl.col("intent") == "newsletter_subscription")["answer"])
    assert len(single) == 3 and not set(single) & newsletter


def test_feedback_changes_the_ranker(sample_corpus, tiny_config, tiny_encoder_dir):
    """The same training run, with and without a thumbs down: the down-voted reply loses score."""
    train = sample_corpus.train()
    question, answer = train["question"][0], train["answer"][0]
    feedback = pl.DataFrame(
        [
            {
                "reply_id": "r1",
                "rating": -1,
                "reason": "wrong",
                "context": question,
                "reply": answer,
                "category": None,
            }
        ],
        schema=SUPPORT_FEEDBACK_SCHEMA,
    )
    config = replace(tiny_config, ranker_steps=15, feedback_weight=3.0, ranker_lr=1e-3)
    base = CrossEncoder.from_encoder(str(tiny_encoder_dir), config.ranker_max_length)
    without = train_ranker(copy.deepcopy(base), train, feedback.clear(), config)
    with_feedback = train_ranker(copy.deepcopy(base), train, feedback, config)
    assert with_feedback.score(question, [answer])[0] < without.score(question, [answer])[0] - 0.02


def test_ranker_training_moves_scores_and_keeps_shapes(sample_corpus, tiny_config, tiny_encoder_dir):
    ranker = CrossEncoder.from_encoder(str(tiny_encoder_dir), 64)
    before = ranker.score("cancel my order", ["a", "b", "c"])
    assert before.shape == (3,) and ((before > 0) & (before < 1)).all()
    train_ranker(ranker, sample_corpus.train(), sample_corpus.feedback, replace(tiny_config, ranker_steps=5))
    after = ranker.score("cancel my order", ["a", "b", "c"])
    assert abs(after - before).max() > 1e-4
    assert ranker.score_pairs([], []).shape == (0,)


def test_int8_ranker_replaces_every_linear_and_stays_close(sample_corpus, tiny_encoder_dir):
    ranker = CrossEncoder.from_encoder(str(tiny_encoder_dir), 64)
    fp32 = copy.deepcopy(ranker)
    train = sample_corpus.train()
    question, replies = train["question"][0], train["answer"].head(6).to_list()
    ranker.quantize()
    int8_linear = torch.ao.nn.quantized.dynamic.Linear
    layers = [m for m in ranker.modules() if isinstance(m, torch.nn.Linear | int8_linear)]
    assert layers and all(isinstance(m, int8_linear) for m in layers)
    assert layers[0]._packed_params._weight_bias()[0].qscheme() == torch.per_channel_affine
    # Every token's representation after all layers: close to fp32, not merely the same head bias.
    batch = ranker.tokenize([question] * len(replies), replies)
    with torch.inference_mode():
        expected = fp32.model.base_model(**batch).last_hidden_state
        got = ranker.model.base_model(**batch).last_hidden_state
    similarity = torch.nn.functional.cosine_similarity(got, expected, dim=-1)
    assert similarity.min() > 0.98
    assert abs(ranker.score(question, replies) - fp32.score(question, replies)).max() < 0.02
