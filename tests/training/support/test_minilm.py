"""The real all-MiniLM-L6-v2 from its package (slow: loads 90 MB of weights)."""

from __future__ import annotations

import numpy as np
import pytest

from training.support.encoder import Document, Retriever, SentenceEncoder, minilm_path
from training.support.ranker import CrossEncoder


def test_minilm_ships_inside_its_package():
    path = minilm_path()
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()


@pytest.mark.slow
def test_minilm_retrieves_by_meaning():
    encoder = SentenceEncoder.load()
    assert encoder.dim == 384
    e = encoder.encode(
        ["how do I cancel my order", "I want to cancel a purchase", "what payment methods do you take"]
    )
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert e[0] @ e[1] > 0.6 > e[0] @ e[2]
    docs = [
        Document("a", "qa", "cancel an order", "To cancel ...", "cancel_order", "ORDER"),
        Document("b", "qa", "which cards do you accept", "We accept ...", "check_payment_methods", "PAYMENT"),
    ]
    hits = Retriever.build(encoder, docs).search("can I pay with a credit card", 2)
    assert hits[0].doc.doc_id == "b" and hits[0].score > hits[1].score
    with pytest.raises(ValueError, match="empty"):
        Retriever.build(encoder, docs).search("  ")
    ranker = CrossEncoder.from_encoder("minilm")
    assert ranker.score("cancel my order", ["a", "b"]).shape == (2,)
