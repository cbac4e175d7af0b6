"""The assistant benchmark's checks catch what they claim to: wrong product facts, unmet constraints."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import polars as pl
import pytest

from training.support.dev_set import DevTurn
from training.support.products import ProductCatalog

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "assistant.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("assistant_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def catalog() -> ProductCatalog:
    return ProductCatalog.from_frame(
        pl.DataFrame(
            {
                "item_id": ["a", "b"],
                "title": ["Acme Soft Lamp", "Orbit Bold Lamp"],
                "category": ["Home > Basics", "Home > Premium"],
                "brand": ["Acme", "Orbit"],
                "price": [12.5, 40.0],
                "currency": ["USD", "USD"],
                "in_stock": [True, False],
            }
        )
    )


def reply(text, *item_ids, catalog, goal="product_request"):
    return {"reply": text, "goal": goal, "products": [catalog.get(i).card() for i in item_ids]}


def test_true_facts_pass_and_each_wrong_fact_is_caught(bench, catalog):
    right = reply(
        "1. Acme Soft Lamp — $12.50, in stock\n2. Orbit Bold Lamp — $40.00, out of stock",
        "a",
        "b",
        catalog=catalog,
    )
    assert bench.fact_errors(right, "show me lamps", catalog) == []
    price = reply("1. Acme Soft Lamp — $13.50, in stock", "a", catalog=catalog)
    stock = reply("The Orbit Bold Lamp is in stock ($40.00).", "b", catalog=catalog, goal="product_question")
    brand = reply("The Acme Soft Lamp is by Orbit.", "a", catalog=catalog, goal="product_question")
    card = {**right, "products": [{**catalog.get("a").card(), "price": 1.0}]}
    for wrong in (price, stock, brand, card):
        assert bench.fact_errors(wrong, "how much is it", catalog), wrong["reply"]
    # A brand the shopper asked about may be named ("not Orbit"); one nobody mentioned may not.
    asked = reply(
        "No — the Acme Soft Lamp is by Acme, not Orbit.", "a", catalog=catalog, goal="product_question"
    )
    assert bench.fact_errors(asked, "is it from Orbit?", catalog) == []
    assert bench.fact_errors(asked, "who makes it?", catalog)


def test_constraints_met(bench, catalog):
    turn = DevTurn(
        "d", 1, "lamps under 20", "product_request", (), constraints={"noun": "Lamp", "max_price": 20}
    )
    a, b = catalog.get("a").card(), catalog.get("b").card()
    assert bench.constraints_met(turn, [a], []) and not bench.constraints_met(turn, [a, b], [])
    cheaper = DevTurn("d", 2, "cheaper", "product_request", (), constraints={"cheaper_than_shown": True})
    assert bench.constraints_met(cheaper, [a], [b]) and not bench.constraints_met(cheaper, [b], [a])
    not_orbit = DevTurn("d", 3, "not Orbit", "product_request", (), constraints={"exclude_brand": "Orbit"})
    assert not bench.constraints_met(not_orbit, [b], [])
