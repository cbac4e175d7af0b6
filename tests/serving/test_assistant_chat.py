"""/chat with a router: product turns answered from the search index and the catalog, products as
structured data in the response; no index is a plain answer, never a 500."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import polars as pl
import pytest
import torch

from serving.config import ServingConfig
from serving.support.engine import SupportEngine
from serving.support.schemas import ChatRequest

KEY = "support-key"


def catalog() -> pl.DataFrame:
    from data_contracts.synthetic import ShopConfig, _items

    return _items(ShopConfig(items=200), np.random.default_rng(2)).drop("top")


@pytest.fixture(scope="module")
def product_tag(tmp_path_factory) -> str:
    """A tiny support model whose router sends every turn to product search (its head set so)."""
    from data_contracts.settings import Settings
    from training.support import training_steps
    from training.support.artifact import SupportModel, save_support_model
    from training.support.config import SupportConfig
    from training.support.corpus import SAMPLE_DIR, build_corpus, read_bitext
    from training.support.encoder import SentenceEncoder
    from training.support.ranker import CrossEncoder
    from training.support.router import LABELS, Router
    from training.support.tiny import tiny_encoder

    bitext = SAMPLE_DIR / "bitext" / "bitext_sample.csv"
    qa, _ = read_bitext(bitext)
    folder = tiny_encoder(tmp_path_factory.mktemp("assistant-encoder"), qa["question"].to_list())
    config = SupportConfig(encoder=str(folder), generator=None, ranker_max_length=64, handover_threshold=0.0)
    encoder = SentenceEncoder.load(str(folder))
    corpus = build_corpus(encoder.encode, bitext, None, threshold=0.98)
    router = Router.from_encoder(str(folder), max_length=32)
    with torch.no_grad():
        router.model.classifier.weight.zero_()
        router.model.classifier.bias.zero_()
        router.model.classifier.bias[LABELS.index("product_request")] = 10.0
    model = SupportModel(
        config,
        training_steps.support_retriever(corpus, encoder),
        CrossEncoder.from_encoder(str(folder), 64),
        router=router,
    )
    return save_support_model(model, Settings(data_dir=tmp_path_factory.mktemp("assistant-data")))


@pytest.fixture
def indexed(settings, tmp_path):
    """The settings' data/search holds an index of the catalog (built with a tiny encoder)."""
    from search.encoder import Encoder
    from search.index import build_index, catalog_items
    from training.support.tiny import tiny_encoder

    frame = catalog()
    folder = tiny_encoder(tmp_path / "search-encoder", catalog_items(frame)["text"].to_list())
    build_index(frame, settings.search_index_dir, Encoder(str(folder), backend="torch"))
    return settings


def test_a_product_request_is_answered_with_catalog_products(indexed, product_tag):
    engine = SupportEngine.from_settings(indexed, ServingConfig(support_tag=product_tag))
    assert engine.products_ready
    out = asyncio.run(engine.chat(ChatRequest(session_id="p1", message="show me lamps under 60")))
    assert out.goal == "product_request" and out.fallback is None and not out.handover
    assert out.products and all("Lamp" in p.title and p.price <= 60 for p in out.products)
    rows = {r["item_id"]: r for r in catalog().iter_rows(named=True)}
    for card in out.products:
        row = rows[card.item_id]  # no warehouse here: the facts are the indexed catalog rows
        assert (card.price, card.in_stock, card.brand) == (row["price"], row["in_stock"], row["brand"])
        assert card.title in out.reply
    # The replies log says what the turn was and which products it showed.
    (logged,) = [
        json.loads(line)
        for path in sorted((indexed.landing_dir / "replies").rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert logged["goal"] == "product_request"
    assert logged["products"] == [card.item_id for card in out.products]


def test_without_a_search_index_a_product_turn_says_so(settings, product_tag):
    engine = SupportEngine.from_settings(settings, ServingConfig(support_tag=product_tag))
    assert not engine.products_ready
    out = asyncio.run(engine.chat(ChatRequest(session_id="n1", message="show me lamps")))
    assert out.fallback is None and out.products == [] and "not available" in out.reply


def test_http_chat_carries_products(indexed, product_tag, monkeypatch, asgi_client):
    monkeypatch.setenv("SHOPML_SUPPORT_TAG", product_tag)
    monkeypatch.setenv("SHOPML_API_KEY", KEY)
    from serving.support.service import SupportService

    client = asgi_client(SupportService)
    r = client.post("/chat", json={"message": "I'm looking for headphones"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["goal"] == "product_request" and body["products"]
    assert set(body["products"][0]) >= {"item_id", "title", "price", "in_stock"}
    schema = client.get("/docs.json").json()["components"]["schemas"]
    assert "products" in schema["ChatResponse"]["properties"]
