"""The runtime routes each turn: products from the catalog, small talk, out of scope, a clarifying
question below the router's threshold, support by retrieve-and-rank; languages first."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from data_contracts.synthetic import ShopConfig, _items
from search.encoder import Encoder
from search.engine import SearchEngine
from search.index import build_index, catalog_items, load_index
from training.support import training_steps
from training.support.artifact import SupportModel
from training.support.config import SupportConfig
from training.support.dialogue import SQLiteStore
from training.support.placeholders import leaks
from training.support.products import ProductAssistant, ProductCatalog, format_price
from training.support.ranker import CrossEncoder
from training.support.router import CLARIFY, LABELS, Router
from training.support.runtime import SupportRuntime, support_contexts
from training.support.tiny import tiny_encoder


def steer(router: Router, label: str | None) -> None:
    """The router's head set to answer ``label`` whatever it reads (None: equally unsure of all)."""
    head = router.model.classifier
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        if label is not None:
            head.bias[LABELS.index(label)] = 10.0


@pytest.fixture(scope="module")
def catalog_frame():
    return _items(ShopConfig(items=300), np.random.default_rng(11)).drop("top")


@pytest.fixture(scope="module")
def products(tmp_path_factory, catalog_frame) -> ProductAssistant:
    texts = catalog_items(catalog_frame)["text"].to_list()
    encoder = Encoder(str(tiny_encoder(tmp_path_factory.mktemp("rt-search-encoder"), texts)), backend="torch")
    root = tmp_path_factory.mktemp("rt-index") / "search"
    build_index(catalog_frame, root, encoder)
    return ProductAssistant(SearchEngine(load_index(root), encoder), ProductCatalog.from_frame(catalog_frame))


@pytest.fixture(scope="module")
def model(tiny_encoder_dir, tiny_sentence_encoder, sample_corpus) -> SupportModel:
    config = SupportConfig(encoder=str(tiny_encoder_dir), generator=None, handover_threshold=0.0)
    router = Router.from_encoder(str(tiny_encoder_dir), max_length=32)
    return SupportModel(
        config,
        training_steps.support_retriever(sample_corpus, tiny_sentence_encoder),
        CrossEncoder.from_encoder(str(tiny_encoder_dir), 64),
        router=router,
    )


@pytest.fixture
def runtime(model, products, tmp_path) -> SupportRuntime:
    return SupportRuntime(
        model, SQLiteStore(tmp_path / "dialogue.sqlite"), use_generator=False, products=products
    )


def say(runtime, session, goal, message):
    steer(runtime.router, goal)
    return runtime.reply(session, message)


def test_a_product_dialogue_carries_its_list_and_states_catalog_facts(runtime, catalog_frame):
    listed = say(runtime, "p1", "product_request", "I'm looking for headphones")
    assert listed["goal"] == "product_request" and not listed["handover"]
    assert listed["products"] and all("Headphones" in p["title"] for p in listed["products"])
    assert listed["sources"] == [] and listed["candidates"] == []  # no knowledge-base article
    rows = {r["item_id"]: r for r in catalog_frame.iter_rows(named=True)}
    for card in listed["products"]:
        assert card["price"] == rows[card["item_id"]]["price"]
        assert card["in_stock"] == rows[card["item_id"]]["in_stock"]
    # Next turn, same session: the state came back from the SQLite store.
    second = listed["products"][1]
    asked = say(runtime, "p1", "product_question", "how much is the second one?")
    assert asked["products"] == [second]
    assert re.findall(r"\$[\d,]+\.\d\d", asked["reply"]) == [format_price(second["price"], "USD")]
    narrowed = say(runtime, "p1", "product_request", f"not {second['brand']} please")
    assert all(p["brand"] != second["brand"] and "Headphones" in p["title"] for p in narrowed["products"])


def test_small_talk_and_out_of_scope_get_short_replies_never_an_article(runtime):
    thanks = say(runtime, "t1", "small_talk", "great, thanks!")
    assert thanks["reply"].startswith("You're welcome") and thanks["goal"] == "small_talk"
    hello = say(runtime, "t1", "small_talk", "hi there")
    assert hello["reply"].startswith("Hello") and runtime.profile.name in hello["reply"]
    bye = say(runtime, "t1", "small_talk", "bye")
    assert "have a great day" in bye["reply"]
    away = say(runtime, "t1", "out_of_scope", "what's the weather in Toronto?")
    assert away["reply"].startswith("Sorry, I can't help with that") and away["goal"] == "out_of_scope"
    for out in (thanks, hello, bye, away):
        assert not out["handover"] and out["sources"] == [] and not leaks(out["reply"])


def test_an_unsure_router_asks_instead_of_guessing(runtime):
    out = say(runtime, "c1", None, "hmm the thing")
    assert (
        out["reply"] == CLARIFY
        and out["goal"] == "clarify"
        and out["router_confidence"] == pytest.approx(0.2)
    )
    assert out["products"] == [] and not out["handover"]


def test_support_turns_take_retrieve_and_rank(runtime):
    out = say(runtime, "s1", "support", "I want to cancel my order")
    assert out["goal"] == "support" and out["candidates"] and out["sources"]


def test_a_question_about_the_shops_own_facts_is_answered_from_its_profile(runtime):
    out = say(runtime, "f1", "support", "what's your phone number?")
    assert runtime.profile.support_phone in out["reply"] and not out["handover"]
    assert out["goal"] == "support" and out["candidates"] == []  # stated, not retrieved and ranked
    assert out["sources"] == [
        {"doc_id": "shop_profile:phone", "kind": "shop_profile", "intent": None, "score": 1.0}
    ]
    # An unsure router does not stop a question the profile answers.
    unsure = say(runtime, "f1", None, "and when are you open?")
    assert runtime.profile.support_hours in unsure["reply"] and unsure["goal"] == "support"
    # A product request that names no fact is not one.
    listed = say(runtime, "f1", "product_request", "do you sell phone chargers?")
    assert listed["goal"] == "product_request"


def test_a_support_turn_is_matched_alone_and_with_the_message_before_it(runtime):
    say(runtime, "s2", "product_request", "I'm looking for headphones")
    turns = runtime.store.turns("s2", runtime.model.config.context_turns) + [
        ("user", "can I pay with PayPal")
    ]
    contexts = support_contexts(turns)
    assert contexts == ["can I pay with PayPal", "I'm looking for headphones can I pay with PayPal"]
    assert support_contexts(turns[:1]) == ["I'm looking for headphones"]
    # A message that only gives what the last reply asked for is read with the request it completes.
    follow_up = [
        ("user", "I want to cancel my order"),
        ("assistant", "… your order number?"),
        ("user", "order 77342109"),
    ]
    assert support_contexts(follow_up) == ["I want to cancel my order"]

    _, candidates = runtime.support_candidates("s2", turns, contexts, {})
    # The message alone keeps its own answers: the product turn cannot crowd them out.
    alone = runtime.model.retriever.search(contexts[0], runtime.model.config.retrieve_k * 2, kind="qa")
    own = [c.text for c in candidates if 0 in c.contexts]
    assert own and own == list(dict.fromkeys(h.doc.text for h in alone))[: runtime.model.config.retrieve_k]

    scores, matched = runtime.rank_best(contexts, candidates)
    for candidate, score, at in zip(candidates, scores, matched, strict=True):
        each = {i: float(runtime.rank(contexts[i], [candidate])[0]) for i in candidate.contexts}
        assert at in candidate.contexts and score == pytest.approx(max(each.values()), abs=1e-5)
        assert each[at] == pytest.approx(score, abs=1e-5)


def test_a_foreign_language_is_handed_over_before_any_routing(runtime):
    out = say(runtime, "l1", "product_request", "我想买一个台灯")
    assert out["handover"] and out["goal"] == "other_language" and out["language"] == "zh"
    assert "route_ms" not in out["timings_ms"]


def test_the_router_reads_the_previous_shopper_message(runtime):
    seen = []
    original = runtime.router.predict

    def spy(messages, previous):
        seen.append((messages, previous))
        return original(messages, previous)

    runtime.router.predict = spy
    try:
        say(runtime, "r1", "small_talk", "hello")
        say(runtime, "r1", "small_talk", "thanks")
    finally:
        del runtime.router.predict
    assert seen == [(["hello"], [""]), (["thanks"], ["hello"])]


def test_without_a_search_index_product_turns_answer_plainly(model, tmp_path):
    runtime = SupportRuntime(model, SQLiteStore(tmp_path / "d.sqlite"), use_generator=False)
    out = say(runtime, "n1", "product_request", "show me lamps")
    assert "not available" in out["reply"] and out["products"] == [] and not out["handover"]
    question = say(runtime, "n1", "product_question", "how much is the first one?")
    assert question["products"] == [] and "$" not in question["reply"]


def test_feedback_on_a_product_reply_is_kept_but_not_a_ranker_pair(runtime):
    out = say(runtime, "f1", "product_request", "show me lamps")
    row = runtime.record_feedback(out["reply_id"], 1)
    assert row["goal"] == "product_request" and row["target_kind"] == "assistant_reply"


def test_each_step_of_a_reply_is_timed_and_a_span_of_the_given_tracer(model, products, tmp_path):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    runtime = SupportRuntime(
        model,
        SQLiteStore(tmp_path / "dialogue.sqlite"),
        use_generator=False,
        products=products,
        tracer=provider.get_tracer("test"),
    )
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /chat"):
        found = say(runtime, "s1", "product_request", "I'm looking for headphones")
        helped = say(runtime, "s2", "support", "where is my refund?")
    spans = {s.name: s for s in exported.get_finished_spans()}
    assert set(found["timings_ms"]) == {"language_ms", "route_ms", "products_ms"}
    assert set(helped["timings_ms"]) == {"language_ms", "route_ms", "retrieve_ms", "rank_ms"}
    assert {f"support.{n[:-3]}" for n in {*found["timings_ms"], *helped["timings_ms"]}} == set(spans) - {
        "POST /chat"
    }
    root = spans["POST /chat"].context
    assert all(s.parent.span_id == root.span_id for name, s in spans.items() if name != "POST /chat")
