"""What the shopper reads: every stand-in of a KB or generated reply resolved, nothing invented."""

from __future__ import annotations

import csv
import re

import pytest

from data_contracts.shop import ShopProfile
from training.support.corpus import BITEXT_FILE, SAMPLE_DIR, default_dataset_dir
from training.support.placeholders import ask_for, classify, fill_reply, leaks

SHOP = ShopProfile()
# A shop that has none of the optional facts: each must be left out, never written as a stand-in.
BARE_SHOP = ShopProfile(
    site_url=None,
    support_email=None,
    support_phone=None,
    live_chat=None,
    support_hours=None,
    return_window_days=None,
    refund_time=None,
)
FULL_BITEXT = default_dataset_dir() / "bitext-customer-support" / BITEXT_FILE


def test_classify():
    assert classify("Order Number Anonymized") == ("slot", "order_number")
    assert classify("Purchase ID Anonymized") == ("slot", "order_number")
    assert classify("Bill Number Anonymized") == ("slot", "invoice_number")
    assert classify("Name Field Anonymized") == ("slot", "name")
    assert classify("Customer Support Phone Number") == ("fact", "support_phone")
    assert classify("Customer Service Email Address") == ("fact", "support_email")
    assert classify("Website Name") == ("fact", "name")
    assert classify("Website URL") == ("fact", "site_url")
    assert classify("Customer Support Availability") == ("fact", "support_hours")
    assert classify("number of days") == ("fact", "return_window_days")
    assert classify("Order History") == ("label", "Order History")
    for stand_in in ("Case 1", "X to Y", "provide instructions to request a refund", "Percentage or Full"):
        assert classify(stand_in)[0] in ("drop", "fact"), stand_in
    assert classify("Case 1") == ("drop", None)


def test_shop_facts_fill_and_missing_ones_are_left_out():
    text = (
        "Visit our {{Website Name}} and open {{Order History}}. "
        "Call [Customer Support Phone Number] during {{Customer Support Hours}}. "
        "Reach us via {{Live Chat}}, {{Phone Number}}, or {{Email}}. Returns within {{number of days}} days."
    )
    filled, missing = fill_reply(text, {}, SHOP)
    assert filled == (
        "Visit our Maple Street Market website and open Order History. Call +1 555 0100 during Monday to "
        "Friday, 9:00 to 18:00 UTC. Reach us via live chat, +1 555 0100, or support@shop.example.com. "
        "Returns within 30 days."
    )
    assert missing == []
    filled, _ = fill_reply(text, {}, BARE_SHOP)
    # The phone sentence goes (nothing left to say), the list loses its missing items.
    assert filled == "Visit our Maple Street Market website and open Order History."


def test_shopper_data_is_filled_or_asked_for_never_invented():
    text = "I understand you want to cancel order {{Order Number}}. Don't worry, {{Name Field Anonymized}}, I'm here."
    filled, missing = fill_reply(text, {"order_number": "12345678"}, SHOP, "cancel order 12345678")
    assert filled == "I understand you want to cancel order 12345678. Don't worry, I'm here."
    assert missing == []
    filled, missing = fill_reply(text, {}, SHOP, "cancel my order")
    assert filled == "I understand you want to cancel your order. Don't worry, I'm here."
    assert missing == ["order_number"]
    assert ask_for(missing) == "Could you tell me your order number?"
    assert ask_for(["order_number", "email"]) == (
        "Could you tell me your order number and the email address on your account?"
    )


def test_example_order_numbers_of_the_corpus_are_never_stated():
    # Bitext's answer to "cancel order 00004587345", retrieved for another shopper's order.
    answer = "I'm here to help you cancel your order with the number 00004587345. Go to {{Order History}}."
    filled, missing = fill_reply(answer, {"order_number": "12345678"}, SHOP, "please cancel order 12345678")
    assert "00004587345" not in filled and "12345678" in filled
    filled, missing = fill_reply(answer, {}, SHOP, "please cancel my order")
    assert not re.search(r"\d{5,}", filled) and missing == ["order_number"]
    invoice = "I can help you locate your bill with the number #85632."
    filled, missing = fill_reply(invoice, {}, SHOP, "where is my bill")
    assert "85632" not in filled and missing == ["invoice_number"]
    # A number the shopper wrote is theirs: kept.
    assert "#85632" in fill_reply(invoice, {}, SHOP, "I can't find bill #85632")[0]


def test_leaks_finds_every_kind_of_stand_in():
    assert leaks("Call {{Customer Support Phone Number}}") == ["{{Customer Support Phone Number}}"]
    assert leaks("Visit [Website URL] now") == ["[Website URL]"]
    assert leaks("Visit Website Name today") == ["Website Name"]
    assert leaks("Half a {{ placeholder") == ["{{"]
    assert leaks("See [our guide](https://shop.example.com/guide).") == []


def bitext_answers(path):
    with path.open(newline="", encoding="utf-8") as handle:
        return [(row["instruction"], row["response"]) for row in csv.DictReader(handle)]


def check_corpus(rows):
    for question, answer in rows:
        for shop in (SHOP, BARE_SHOP):
            # Said nothing (the answer retrieved for another question) and said the question.
            for said, slots in (("", {}), (question, {})):
                filled, _ = fill_reply(answer, slots, shop, said)
                # With every fact set, something is always left to say (the runtime hands
                # over when nothing is: an answer only about a missing fact).
                assert filled or shop is BARE_SHOP, answer
                assert leaks(filled) == [], (answer, filled)
                assert "{{" not in filled and "}}" not in filled
                for number in re.findall(r"\d{5,}", filled):
                    assert number in said, (number, answer)


def test_every_answer_of_the_committed_sample_is_clean():
    check_corpus(bitext_answers(SAMPLE_DIR / "bitext" / "bitext_sample.csv"))


@pytest.mark.skipif(not FULL_BITEXT.exists(), reason=f"{FULL_BITEXT} absent (../shared/datasets)")
def test_every_answer_of_the_full_bitext_file_is_clean():
    check_corpus(bitext_answers(FULL_BITEXT))
