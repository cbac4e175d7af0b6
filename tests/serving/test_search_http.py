"""POST /search on the recommender service: results, the served log, personalisation, bad queries."""

from __future__ import annotations

import json

import duckdb
import pytest

from search.encoder import Encoder
from search.index import build_index, catalog_items
from training.support.tiny import tiny_encoder

KEY = "test-key-123"


@pytest.fixture
def search_encoder_spec(shop_settings, tmp_path) -> str:
    with duckdb.connect(str(shop_settings.warehouse_path), read_only=True) as conn:
        texts = catalog_items(conn.execute("SELECT * FROM catalog").pl())["text"].to_list()
    return str(tiny_encoder(tmp_path / "search-encoder", texts))


def build_search_index(settings, spec: str) -> None:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        catalog = conn.execute("SELECT * FROM catalog").pl()
    build_index(catalog, settings.search_index_dir, Encoder(spec, backend="torch"))


@pytest.fixture
def make_client(shop_settings, recommender_tag, monkeypatch, asgi_client):
    monkeypatch.setenv("SHOPML_RECOMMENDER_TAG", recommender_tag)
    monkeypatch.setenv("SHOPML_API_KEY", KEY)

    def make():
        from serving.recommender.service import RecommenderService

        return asgi_client(RecommenderService)

    return make


def test_without_an_index_search_says_so_and_does_not_fail(make_client):
    answer = make_client().post("/search", json={"query": "item"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["index_ready"] is False and body["fallback"] == "no_index" and body["items"] == []


def test_search_answers_logs_and_takes_clicks(make_client, shop_settings, search_encoder_spec, shop):
    build_search_index(shop_settings, search_encoder_spec)
    client = make_client()
    answer = client.post("/search", json={"query": "Item i3", "k": 3})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["index_ready"] and body["index_version"] == 1 and not body["personalised"]
    # The encoder is tiny and untrained: its vector list is noise, so the item is among the
    # first three (BM25 ranks it first), not necessarily first.
    (hit,) = [i for i in body["items"] if i["item_id"] == "i3"]
    assert hit["title"] == "Item i3" and hit["why"]["lexical_rank"] == 1
    assert {"price", "category", "in_stock", "score", "brand"} <= set(hit)
    logged = [
        json.loads(line)
        for path in (shop_settings.landing_dir / "searches").glob("*/*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert [r["search_id"] for r in logged] == [body["search_id"]]
    assert logged[0]["items"] == [i["item_id"] for i in body["items"]] and logged[0]["query"] == "Item i3"
    click = {"user_id": "u0", "item_id": "i3", "event_type": "rec_click", "rec_id": body["search_id"]}
    assert client.post("/events", json=click, headers={"X-API-Key": KEY}).status_code == 200


def test_filters_and_a_slip(make_client, shop_settings, search_encoder_spec, shop):
    build_search_index(shop_settings, search_encoder_spec)
    client = make_client()
    body = client.post(
        "/search", json={"query": "itme", "k": 20, "category": "Toys", "in_stock": True}
    ).json()
    assert body["corrected_query"] == "item"
    assert body["items"] and all(i["category"].startswith("Toys") and i["in_stock"] for i in body["items"])
    cheap = client.post("/search", json={"query": "item", "k": 20, "max_price": 3}).json()["items"]
    assert cheap and all(i["price"] <= 3 for i in cheap)
    # A range upside down (as a price slider can send) is a valid filter that matches nothing.
    swapped = client.post("/search", json={"query": "item", "min_price": 10, "max_price": 5})
    assert swapped.status_code == 200 and swapped.json()["items"] == []


def test_a_known_shopper_gets_a_personalised_order(make_client, shop_settings, search_encoder_spec):
    build_search_index(shop_settings, search_encoder_spec)
    body = make_client().post("/search", json={"query": "item", "k": 10, "user_id": "u0"}).json()
    assert body["personalised"] and body["fallback"] is None
    assert any(i["why"]["personal"] is not None for i in body["items"])


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"query": ""},
        {"query": "   "},
        {"query": "x" * 257},
        {"query": "bad\x00query"},
        {"query": "item", "k": 0},
        {"query": "\t\n"},
        {"query": "item", "unknown": 1},
    ],
)
def test_bad_queries_are_a_400_with_a_message(make_client, body):
    answer = make_client().post("/search", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.text
