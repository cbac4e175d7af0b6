"""Product turns: constraints carried through a dialogue, facts from the catalog, references resolved."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from data_contracts.synthetic import ShopConfig, _items
from search.encoder import Encoder
from search.engine import SearchEngine
from search.index import build_index, catalog_items, load_index
from training.support.dialogue import InMemoryStore, SQLiteStore
from training.support.products import (
    ProductAssistant,
    ProductCatalog,
    ProductState,
    format_price,
    stock_text,
)
from training.support.tiny import tiny_encoder


@pytest.fixture(scope="module")
def catalog_frame() -> pl.DataFrame:
    return _items(ShopConfig(items=400), np.random.default_rng(5)).drop("top")


@pytest.fixture(scope="module")
def assistant(tmp_path_factory, catalog_frame) -> ProductAssistant:
    texts = catalog_items(catalog_frame)["text"].to_list()
    encoder_dir = tiny_encoder(tmp_path_factory.mktemp("products-encoder"), texts)
    root = tmp_path_factory.mktemp("products-index") / "search"
    encoder = Encoder(str(encoder_dir), backend="torch")
    build_index(catalog_frame, root, encoder)
    engine = SearchEngine(load_index(root), encoder)
    return ProductAssistant(engine, ProductCatalog.from_frame(catalog_frame))


def talk(assistant, messages, state=None):
    """Each (kind, message) through the assistant; the answers, the state carried along."""
    state = state or ProductState()
    answers = []
    for kind, message in messages:
        answer = (assistant.request if kind == "r" else assistant.question)(message, state)
        state = answer.state
        answers.append(answer)
    return answers


def prices_in(text: str) -> list[str]:
    return re.findall(r"\$[\d,]+\.\d\d", text)


def test_a_request_shows_catalog_products_with_their_facts(assistant, catalog_frame):
    (answer,) = talk(assistant, [("r", "I'm looking for headphones")])
    assert answer.problem is None and 1 <= len(answer.products) <= 3
    rows = {r["item_id"]: r for r in catalog_frame.iter_rows(named=True)}
    for p in answer.products:
        row = rows[p.item_id]
        assert "Headphones" in p.title and p.price == row["price"] and p.in_stock == row["in_stock"]
        assert f"{p.title} — {format_price(p.price, 'USD')}, {stock_text(p.in_stock)}" in answer.text
    assert answer.state.shown == [p.item_id for p in answer.products]
    assert answer.products[0].card()["price"] == answer.products[0].price


def test_constraints_are_carried_and_narrowed(assistant, catalog_frame):
    first, cheap = talk(assistant, [("r", "show me lamps"), ("r", "something under 40 dollars?")])
    assert all("Lamp" in p.title for p in first.products)
    assert cheap.products and all("Lamp" in p.title and p.price <= 40 for p in cheap.products)
    assert cheap.state.constraints.max_price == 40
    # Excluding the brand of the first lamp shown: it would come first again if not excluded.
    brand = cheap.products[0].brand
    (not_brand,) = talk(assistant, [("r", f"not {brand} please")], cheap.state)
    lamps = catalog_frame.filter(pl.col("title").str.contains("Lamp"))
    if lamps.filter((pl.col("price") <= 40) & (pl.col("brand") != brand)).height:
        assert not_brand.products
    assert all(p.brand != brand and p.price <= 40 and "Lamp" in p.title for p in not_brand.products)
    assert not_brand.state.constraints.exclude_brands == [brand]


def test_something_cheaper_is_cheaper_than_everything_shown(assistant):
    shown, cheaper = talk(assistant, [("r", "do you sell yoga mats"), ("r", "show me something cheaper")])
    floor = min(p.price for p in shown.products)
    if cheaper.problem is None:
        assert all(p.price < floor and "Mat" in p.title for p in cheaper.products)
    else:  # nothing cheaper: said plainly, and the list on screen is still the one referred to
        assert cheaper.problem == "no_match" and "couldn't find" in cheaper.text
        assert cheaper.state.shown == shown.state.shown


def test_a_brand_a_range_and_a_new_product_word(assistant, catalog_frame):
    kestrel, premium, kites = talk(
        assistant,
        [
            ("r", "any clocks from Kestrel?"),
            ("r", "anything from the premium range?"),
            ("r", "what about a kite"),
        ],
    )
    assert all(p.brand == "Kestrel" and "Clock" in p.title for p in kestrel.products)
    # "the premium range" of what was shown: Home > Premium
    assert premium.state.constraints.top_category == "Home" or premium.problem == "no_match"
    assert all(p.category == "Home > Premium" for p in premium.products)
    # A new product word starts afresh: the brand and the range are not carried to kites.
    assert kites.products and all("Kite" in p.title for p in kites.products)
    assert kites.state.constraints.brand is None and kites.state.constraints.sub_category is None


def test_nothing_fits_is_said_plainly_and_keeps_the_dialogue(assistant):
    shown, none = talk(assistant, [("r", "show me mugs"), ("r", "mugs under 1 dollar")])
    assert shown.products and none.products == [] and none.problem == "no_match"
    assert none.text.startswith("Sorry, I couldn't find any mugs under $1.00")
    assert none.state.shown == shown.state.shown and prices_in(none.text) == ["$1.00"]


def test_a_category_the_product_word_never_occurs_in_gives_way_to_the_word(assistant):
    # Dumbbells are Sports products: "home" names the gym, not the Home category.
    (answer,) = talk(assistant, [("r", "got any dumbbells for my home gym?")])
    assert answer.problem == "relaxed" and answer.products
    assert answer.text.startswith("Sorry, I couldn't find any dumbbells in Home. Here are")
    assert all("Dumbbell" in p.title and p.category.startswith("Sports") for p in answer.products)
    assert answer.state.constraints.top_category is None
    assert answer.state.shown == [p.item_id for p in answer.products]


def test_nothing_cheaper_from_the_brand_offers_cheaper_ones_from_others(assistant, catalog_frame):
    mats = catalog_frame.filter(pl.col("title").str.contains("Yoga Mat"))
    by_brand = mats.group_by("brand").agg(pl.len().alias("n"), pl.col("price").min().alias("low"))
    # A brand whose every mat is shown at once, and that another brand undercuts.
    brand = by_brand.filter((pl.col("n") <= 3) & (pl.col("low") > mats["price"].min()))["brand"][0]
    shown, cheaper = talk(assistant, [("r", f"yoga mats from {brand}"), ("r", "something cheaper")])
    assert shown.products and all(p.brand == brand for p in shown.products)
    floor = min(p.price for p in shown.products)
    assert cheaper.problem == "relaxed" and cheaper.products
    assert cheaper.text.startswith(f"Sorry, I couldn't find any {brand} yoga mats under ")
    assert all(p.price < floor and "Yoga Mat" in p.title and p.brand != brand for p in cheaper.products)
    assert cheaper.state.constraints.brand is None and cheaper.state.constraints.max_price < floor


def test_questions_are_answered_from_the_catalog_row_of_the_product_meant(assistant):
    listed, price, stock, brand, cheapest = talk(
        assistant,
        [
            ("r", "I need a keyboard"),
            ("q", "how much is the second one?"),
            ("q", "is it in stock?"),
            ("q", "who makes it?"),
            ("q", "what's the price of the cheapest?"),
        ],
    )
    shown = listed.products
    assert len(shown) >= 2
    second = shown[1]
    assert price.products == [second] and prices_in(price.text) == [format_price(second.price, "USD")]
    assert stock.products == [second] and (("out of stock" in stock.text) == (not second.in_stock))
    assert brand.products == [second] and brand.text == f"The {second.title} is by {second.brand}."
    low = min(shown, key=lambda p: p.price)
    assert cheapest.products == [low] and format_price(low.price, "USD") in cheapest.text


def test_a_named_brand_is_confirmed_or_corrected(assistant):
    (listed,) = talk(assistant, [("r", "show me speakers")])
    first = listed.products[0]
    other = next(b for b in ("Acme", "Orbit", "Zephyr") if b != first.brand)
    (right,) = talk(assistant, [("q", f"does the first one come from {first.brand}?")], listed.state)
    (wrong,) = talk(assistant, [("q", f"does the first one come from {other}?")], listed.state)
    assert (
        right.text.startswith("Yes")
        and wrong.text == f"No — the {first.title} is by {first.brand}, not {other}."
    )


def test_an_ordinal_past_the_list_and_no_list_yet_get_plain_answers(assistant):
    listed, fifth = talk(assistant, [("r", "show me blankets"), ("q", "how much is the fifth one?")])
    assert len(listed.products) == 3
    assert fifth.problem == "unknown_reference" and "Which one do you mean?" in fifth.text
    assert prices_in(fifth.text) == []  # no price stated for a product nobody meant
    (nothing,) = talk(assistant, [("q", "how much is the second one?")])
    assert nothing.problem == "nothing_shown" and nothing.products == [] and prices_in(nothing.text) == []
    _, seeds = talk(assistant, [("r", "show me blankets"), ("q", "how much are the seeds in your list")])
    assert seeds.problem == "no_match_shown" and prices_in(seeds.text) == []


def test_attributes_the_catalog_does_not_hold_are_not_invented(assistant):
    _, size = talk(assistant, [("r", "sneakers please"), ("q", "do the first ones come in size 42?")])
    assert size.text.startswith("Our catalog doesn't list sizes") and "42" not in size.text


def test_without_a_search_index_product_turns_say_so():
    nothing = ProductAssistant(None, None)
    assert not nothing.available
    answer = nothing.request("show me lamps", ProductState())
    assert answer.problem == "no_index" and "not available" in answer.text and answer.products == []
    assert nothing.question("how much is it?", ProductState()).problem == "no_index"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_product_state_survives_the_dialogue_store(assistant, kind, tmp_path):
    (answer,) = talk(assistant, [("r", "Orbit mugs under 50")])
    store = InMemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "d.sqlite")
    assert store.state("s1") == {}
    store.set_state("s1", answer.state.to_dict())
    back = ProductState.from_dict(store.state("s1"))
    assert back == answer.state and back.constraints.brand == "Orbit" and back.constraints.max_price == 50
