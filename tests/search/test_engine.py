"""The search engine on a small catalog: slips, plurals, fusion, filters, the personal blend."""

from __future__ import annotations

import numpy as np
import pytest

from search.config import SearchConfig
from search.engine import Filters, QueryError, SearchEngine, _ranks
from search.index import load_index


@pytest.fixture
def engine(index_root, encoder) -> SearchEngine:
    return SearchEngine(load_index(index_root), encoder, SearchConfig(query_cache=0))


def titles(engine, result):
    return [engine.index.titles[h.row] for h in result.hits]


@pytest.mark.parametrize("query", ["tent", "tents", "Tents", "tnet", "dome tnt", "camping tents"])
def test_slips_and_plurals_still_find_the_product(engine, query):
    found = titles(engine, engine.search(query, 3, lexical=True, dense=False))
    assert any("Tent" in t for t in found[:2]), (query, found)


def test_a_misspelt_query_says_what_was_corrected(engine):
    result = engine.search("hedphones", 5)
    assert result.corrections == {"hedphones": "headphones"}
    assert result.corrected_query == "headphones"
    assert all("Headphones" in t for t in titles(engine, result)[:3])


def test_real_words_the_catalog_lacks_are_not_bent_into_catalog_words(engine):
    # "cheap" is two edits from "cream"; a short word may only slip once.
    assert engine.search("cheap headphones", 5).corrections == {}


def test_every_hit_says_which_index_found_it(engine):
    hits = engine.search("Acme lamp", 10).hits
    assert hits and all(h.lexical_rank is not None or h.dense_rank is not None for h in hits)
    assert hits == sorted(hits, key=lambda h: -h.score)
    lexical_only = engine.search("Acme lamp", 10, dense=False).hits
    assert all(h.dense_rank is None and h.lexical_rank is not None for h in lexical_only)


def test_filters_category_price_and_stock(engine):
    index = engine.index
    result = engine.search("lamp", 20, Filters(category="home", min_price=10, max_price=40, in_stock=True))
    assert result.hits
    for h in result.hits:
        assert index.categories[h.row].lower().startswith("home")
        assert 10 <= index.prices[h.row] <= 40 and index.in_stock[h.row]
    out = engine.search("tent", 5, Filters(in_stock=False)).hits
    assert out[0].item_id == "tent-2" and not any(index.in_stock[h.row] for h in out)


def test_out_of_stock_items_are_found_and_flagged(engine):
    hits = engine.search("tunnel tent", 2, dense=False).hits
    assert hits[0].item_id == "tent-2" and not engine.index.in_stock[hits[0].row]


def test_the_personal_blend_reorders_but_never_brings_in_what_the_query_did_not_find(engine):
    base = engine.search("tent", 5, dense=False)
    assert {h.item_id for h in base.hits} == {"tent-1", "tent-2"}

    def loves(item_ids):
        # The shopper's favourite is a lamp, and they like tent-2 better than tent-1.
        favourite = {"tent-2": 5.0, "tent-1": 1.0}
        return np.array([favourite.get(i, 0.0) for i in item_ids])

    personal = engine.search("tent", 5, dense=False, personal=loves)
    assert personal.personalised
    # Two lexical ranks apart by one: within the blend's reach, so the favourite goes first.
    assert [h.item_id for h in personal.hits] == ["tent-2", "tent-1"]
    assert [h.personal for h in personal.hits] == [1.0, 0.0]
    # Bounded: every score grows by at most the configured factor.
    before = {h.item_id: h.score for h in base.hits}
    for h in personal.hits:
        assert before[h.item_id] <= h.score <= before[h.item_id] * (1 + engine.config.personal_weight) + 1e-12


def test_the_blend_cannot_lift_a_weak_match_over_a_strong_one(engine):
    base = engine.search("Acme lamp", 20)
    weakest = base.hits[-1].item_id
    result = engine.search("Acme lamp", 20, personal=lambda ids: np.array([float(i == weakest) for i in ids]))
    assert result.hits[0].item_id == base.hits[0].item_id


@pytest.mark.parametrize("query", ["", "   ", "\n\t", "x" * 300])
def test_bad_queries_are_refused_with_a_reason(engine, query):
    with pytest.raises(QueryError, match="empty|characters"):
        engine.search(query)


def test_ranks_are_one_based_and_skip_zero_scores():
    assert _ranks(np.array([0.0, 3.0, 1.0, 3.0]), 3, positive_only=True) == {1: 1, 3: 2, 2: 3}
    assert _ranks(np.array([0.5, -np.inf]), 5) == {0: 1}
