"""Questions about the shop's own facts are answered from its profile; nothing else is taken for one."""

from __future__ import annotations

import csv
from dataclasses import replace

import pytest

from data_contracts.shop import ShopProfile
from training.support.corpus import SAMPLE_DIR
from training.support.placeholders import leaks
from training.support.shop_facts import asked_facts, shop_fact_reply

# Values no default has: a reply that states them took them from this profile.
PROFILE = replace(
    ShopProfile(),
    name="Tiny Toys",
    support_phone="+44 20 7946 0000",
    support_email="help@tinytoys.test",
    support_hours="every day, 8:00 to 20:00 GMT",
    return_window_days=14,
    refund_time="3 business days",
    delivery_options=("next-day delivery (1 business day)", "economy post (5 to 7 business days)"),
    site_url="https://tinytoys.test",
)


@pytest.mark.parametrize(
    ("message", "facts", "stated"),
    [
        ("what's your phone number?", ["phone"], ["+44 20 7946 0000", "every day, 8:00 to 20:00 GMT"]),
        ("Can I call you about my order?", ["phone"], ["+44 20 7946 0000"]),
        ("what is your email address", ["email"], ["help@tinytoys.test"]),
        ("when are you open?", ["hours"], ["every day, 8:00 to 20:00 GMT"]),
        ("what's your return policy?", ["return_window", "refund_time"], ["14 days", "3 business days"]),
        ("can I return it if it doesn't fit?", ["return_window", "refund_time"], ["14 days"]),
        ("how long does the refund take", ["refund_time"], ["3 business days"]),
        ("how long does delivery take?", ["delivery"], ["next-day delivery", "economy post"]),
        ("can I get it delivered by Friday?", ["delivery"], ["next-day delivery (1 business day)"]),
        (
            "how can I contact customer service",
            ["contact"],
            ["+44 20 7946 0000", "help@tinytoys.test", "https://tinytoys.test", "Tiny Toys"],
        ),
        ("what's your website", ["website"], ["https://tinytoys.test"]),
        ("how do I contact you by email?", ["email"], ["help@tinytoys.test"]),
    ],
)
def test_a_fact_question_is_answered_from_the_profile(message, facts, stated):
    text, said = shop_fact_reply(message, PROFILE)
    assert said == facts
    assert all(value in text for value in stated), text
    assert not leaks(text) and len(text) < 300


@pytest.mark.parametrize(
    "message",
    [
        "I didn't get the email",
        "I want to change the phone number on my account",
        "how do I contact a human agent",
        "I want to return an item",  # an action, not a question about the policy
        "where is my delivery",
        "do you sell phone chargers?",
        "thanks, you too",
    ],
)
def test_other_messages_are_not_taken_for_a_fact_question(message):
    assert shop_fact_reply(message, PROFILE) is None


def test_a_fact_the_shop_has_no_value_for_is_not_answered_here():
    bare = replace(PROFILE, support_phone=None, return_window_days=None)
    assert shop_fact_reply("what's your phone number?", bare) is None
    # The refund time alone is not what "your return policy" asked for.
    assert shop_fact_reply("what's your return policy?", bare) is None
    assert "help@tinytoys.test" in shop_fact_reply("how can I contact you?", bare)[0]


def test_no_bitext_question_of_another_intent_is_taken_for_a_fact_question():
    related = {
        "check_refund_policy",
        "contact_customer_service",
        "delivery_options",
        "delivery_period",
        "track_refund",
        "get_refund",
    }
    with (SAMPLE_DIR / "bitext" / "bitext_sample.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    others = [r["instruction"] for r in rows if r["intent"] not in related]
    assert len(others) >= 200
    assert [q for q in others if asked_facts(q)] == []
