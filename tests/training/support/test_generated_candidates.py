"""Generated candidates in the support path: several per turn, ranked with the retrieved answers,
cleaned and checked for stand-ins so that nothing bracketed or invented reaches the shopper."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from data_contracts.shop import ShopProfile
from training.support import training_steps
from training.support.artifact import SupportModel
from training.support.config import SupportConfig
from training.support.evaluate import GATE_SHUT, SupportCase, choose_gate, chosen_index
from training.support.placeholders import clean_generated, leaks
from training.support.products import Product, ProductAssistant, ProductCatalog, ProductState
from training.support.runtime import Candidate, InMemoryStore, SupportRuntime, reply_seed


class ScriptedGenerator:
    """Writes the given replies (the first ``num``) and records what it was asked."""

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.calls: list[dict] = []

    def candidates(self, turns, passages, num, facts=None, seed=0, **kwargs) -> list[str]:
        self.calls.append({"turns": turns, "passages": passages, "num": num, "facts": facts, "seed": seed})
        return self.texts[:num]


class PrefersGenerated:
    """A ranker that scores a candidate by whether it says "GEN" (the generated ones here)."""

    def score(self, context: str, candidates: list[str]) -> np.ndarray:
        return np.array([0.95 - 0.01 * i if "GEN" in c else 0.6 for i, c in enumerate(candidates)])

    def score_pairs(self, contexts: list[str], replies: list[str]) -> np.ndarray:
        return self.score(contexts[0] if contexts else "", replies)


GENERATED = [
    "GEN You can cancel order {{Order Number}} under {{Order History}}. Then wait for the",
    "GEN Call us on +1 800 555 1234 to cancel. GEN Our team is glad to help [Agent Name].",
    "GEN Reach [Customer Support Phone Number] or {{Customer Support Email}} any time.",
    "GEN It costs $19.99 to cancel. That is all.",
    "GEN {{Mystery Stand-in 42}}.",
]


@pytest.fixture(scope="module")
def retriever(sample_corpus, tiny_sentence_encoder):
    return training_steps.support_retriever(sample_corpus, tiny_sentence_encoder)


def runtime_with(retriever, texts, candidates=4, products=None) -> tuple[SupportRuntime, ScriptedGenerator]:
    generator = ScriptedGenerator(texts)
    config = SupportConfig(generator_candidates=candidates, handover_threshold=0.5, router=False)
    model = SupportModel(config, retriever, PrefersGenerated(), generator)
    runtime = SupportRuntime(
        model, InMemoryStore(), route=False, products=products or ProductAssistant(None, None)
    )
    return runtime, generator


def test_generated_candidates_are_ranked_with_the_retrieved_answers(retriever):
    runtime, generator = runtime_with(retriever, GENERATED, candidates=4)
    out = runtime.reply("s1", "I want to cancel my order")
    assert generator.calls[0]["num"] == 4
    assert generator.calls[0]["seed"] == reply_seed(0, "I want to cancel my order")
    sources = [c["source"] for c in out["candidates"]]
    assert "generated" in sources and any(s != "generated" for s in sources)
    # The unfinished sentence is cut; a generated candidate won (the ranker prefers them).
    assert out["reply"].startswith("GEN You can cancel your order under Order History.")
    assert "Then wait" not in out["reply"] and not out["handover"]
    assert out["missing_slots"] == ["order_number"]
    assert "generate_ms" in out["timings_ms"]


def test_no_generated_text_reaches_the_shopper_with_a_stand_in_or_an_invented_fact(retriever):
    runtime, _ = runtime_with(retriever, GENERATED, candidates=5)
    # (No question about the shop's own facts: those are answered from the profile, not generated.)
    for i, message in enumerate(["cancel my order please", "I need to talk to customer service", "refund"]):
        out = runtime.reply(f"s{i}", message)
        shown = [out["reply"]] + [c["text"] for c in out["candidates"]]
        for text in shown:
            assert leaks(text) == [], text
            assert "555 1234" not in text and "$19.99" not in text and "Mystery" not in text
        generated = [c["text"] for c in out["candidates"] if c["source"] == "generated"]
        # Invented phone and price sentences go; the profile's own phone and e-mail fill the stand-ins.
        assert any("+1 555 0100" in t and "support@shop.example.com" in t for t in generated)
        # A sentence with a stand-in the shop cannot fill goes, and a reply of nothing else too.
        assert not any("glad to help" in t for t in generated)
        assert "That is all." in generated and not any("costs" in t for t in generated)


def test_a_generated_reply_of_stand_ins_only_is_not_a_candidate(retriever):
    runtime, _ = runtime_with(retriever, ["GEN {{Mystery Stand-in 42}}.", "GEN unfinished"], candidates=2)
    out = runtime.reply("s1", "cancel my order")
    assert all(c["source"] != "generated" for c in out["candidates"])


def test_generation_off_and_zero_candidates_write_nothing(retriever):
    runtime, generator = runtime_with(retriever, GENERATED, candidates=0)
    runtime.reply("s1", "cancel my order")
    off, off_generator = runtime_with(retriever, GENERATED)
    off.use_generator = False
    out = off.reply("s1", "cancel my order")
    assert generator.calls == [] == off_generator.calls
    assert "generate_ms" not in out["timings_ms"]


class EchoGenerator(ScriptedGenerator):
    """Writes its first passage back (grounded) and a reply about nothing in it."""

    def __init__(self):
        super().__init__([])

    def candidates(self, turns, passages, num, facts=None, seed=0, **kwargs) -> list[str]:
        self.calls.append({"turns": turns, "passages": passages, "num": num})
        return [passages[0], "GEN Zebras enjoy quantum lasagna on purple Tuesdays."]


def gated_runtime(retriever, min_grounding: float) -> tuple[SupportRuntime, EchoGenerator]:
    generator = EchoGenerator()
    config = SupportConfig(router=False, generation_min_grounding=min_grounding, prompt_passages=1)
    model = SupportModel(config, retriever, PrefersGenerated(), generator)
    return SupportRuntime(model, InMemoryStore(), route=False), generator


def test_the_gate_keeps_only_generated_replies_close_to_their_passages(retriever):
    runtime, _ = gated_runtime(retriever, -1.0)
    turns = [("user", "I want to cancel my order")]
    _, everything = runtime.support_candidates("s1", turns, [turns[0][1]], {})
    generated = [c for c in everything if c.source == "generated"]
    assert len(generated) == 2 and all(c.grounding is not None for c in generated)
    echo, unrelated = generated
    assert echo.grounding > unrelated.grounding
    assert all(c.grounding is None for c in everything if c.source != "generated")

    runtime, _ = gated_runtime(retriever, (echo.grounding + unrelated.grounding) / 2)
    timings = {}
    _, gated = runtime.support_candidates("s1", turns, [turns[0][1]], timings)
    assert [c.text for c in gated if c.source == "generated"] == [echo.text]
    assert "ground_ms" in timings
    # Ungated, as the gate's fitting sees them.
    _, ungated = runtime.support_candidates("s1", turns, [turns[0][1]], {}, gate=False)
    assert [c.text for c in ungated] == [c.text for c in everything]


def test_a_shut_gate_generates_nothing(retriever):
    runtime, generator = gated_runtime(retriever, GATE_SHUT)
    out = runtime.reply("s1", "I want to cancel my order")
    assert generator.calls == [] and "generate_ms" not in out["timings_ms"]
    assert all(c["source"] != "generated" for c in out["candidates"])


def test_chosen_index_respects_the_gate_and_the_sources():
    case = SupportCase(
        candidates=[
            Candidate("retrieved", "qa-1"),
            Candidate("vague", "generated", grounding=0.2),
            Candidate("grounded", "generated", grounding=0.8),
        ],
        scores=np.array([0.5, 0.9, 0.7]),
        reference="r",
        milliseconds=1.0,
    )
    assert chosen_index(case, -1.0) == 1
    assert chosen_index(case, 0.5) == 2
    assert chosen_index(case, GATE_SHUT) == 0
    assert chosen_index(case, -1.0, "retrieved") == 0
    assert chosen_index(case, 0.5, "generated") == 2
    assert chosen_index(SupportCase([], np.zeros(0), "r", 1.0), -1.0) == -1


def test_the_products_in_the_conversation_are_in_the_prompt(retriever):
    catalog = ProductCatalog(
        {
            "i1": Product("i1", "Desk Lamp", 12.5, "USD", True, "Acme"),
            "i2": Product("i2", "Floor Lamp", 40.0, "USD", False, "Lumo"),
        }
    )
    runtime, generator = runtime_with(retriever, GENERATED, products=ProductAssistant(None, catalog))
    runtime.store.set_state("s1", ProductState(shown=["i1", "i2"], focus="i2").to_dict())
    runtime.reply("s1", "does it come with a warranty?")
    assert generator.calls[0]["facts"] == [
        "Floor Lamp by Lumo: $40.00, out of stock",
        "Desk Lamp by Acme: $12.50, in stock",
    ]


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("Sure. Go to {{Order History}} and click", "Sure."),
        ("no sentence ends here", ""),
        ("Call +44 20 7946 0958 now. Or write to us.", "Or write to us."),
        ("See www.example.org. Thanks!", "Thanks!"),
        ("Mail help@example.net today. Bye.", "Bye."),
        (
            "Call +1 555 0100 or mail support@shop.example.com. Bye.",
            "Call +1 555 0100 or mail support@shop.example.com. Bye.",
        ),
        ("It is 20 dollars. Fine.", "Fine."),
        ("1. Open the app\n2. Tap Orders\n3. Tap", "1. Open the app\n2. Tap Orders"),
    ],
)
def test_clean_generated(text, cleaned):
    assert clean_generated(text, ShopProfile()) == cleaned


def test_clean_generated_knows_only_the_profile_contacts():
    profile = replace(ShopProfile(), support_phone=None)
    assert clean_generated("Call +1 555 0100 now. Bye.", profile) == "Bye."


def test_the_gate_opens_only_for_a_gain_beyond_the_noise():
    rng = np.random.default_rng(0)
    shut = rng.uniform(0.5, 0.9, 40)
    clear = shut + 0.05 + rng.normal(0, 0.02, 40)  # better on nearly every row
    noise = shut + rng.normal(0.002, 0.1, 40)  # better on average by less than its noise
    assert choose_gate({0.5: clear, 0.7: noise, GATE_SHUT: shut})[0] == 0.5
    threshold, gain, error = choose_gate({0.5: noise, GATE_SHUT: shut})
    assert threshold == GATE_SHUT and gain < 2 * error
    assert choose_gate({0.5: shut - 0.1, GATE_SHUT: shut})[0] == GATE_SHUT
