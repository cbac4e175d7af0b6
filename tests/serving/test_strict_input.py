"""Smaller input holes: strict ints and booleans, no control characters in chat messages, and
feedback only on recommendations that were served."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from data_contracts.landing_log import LandingLog
from serving.recommender.schemas import EventRequest, RecommendRequest, SimilarRequest
from serving.served import ServedLog
from serving.support.schemas import ChatRequest, FeedbackRequest


@pytest.mark.parametrize("k", ['"5"', "true", "5.5"])
def test_k_is_a_json_integer_not_something_like_one(k):
    with pytest.raises(ValidationError, match="k"):
        RecommendRequest.model_validate_json(f'{{"user_id": "u1", "k": {k}}}')
    with pytest.raises(ValidationError, match="k"):
        SimilarRequest.model_validate_json(f'{{"item_id": "i1", "k": {k}}}')
    assert RecommendRequest.model_validate_json('{"user_id": "u1", "k": 5}').k == 5
    # 5.0 is an integer to JSON Schema (and so to the published document): taken as 5.
    assert type(RecommendRequest.model_validate_json('{"user_id": "u1", "k": 5.0}').k) is int


def test_other_fields_are_strict_too_but_a_whole_price_is_a_price():
    with pytest.raises(ValidationError, match="in_stock_only"):
        RecommendRequest.model_validate_json('{"user_id": "u1", "in_stock_only": "yes"}')
    with pytest.raises(ValidationError, match="quantity"):
        EventRequest.model_validate_json(
            '{"user_id": "u", "item_id": "i", "event_type": "view", "quantity": "2"}'
        )
    event = EventRequest.model_validate_json(
        '{"user_id": "u", "item_id": "i", "event_type": "view", "price": 3}'
    )
    assert event.price == 3.0


def test_rating_is_one_or_minus_one_not_true():
    for rating in ("true", '"1"', "1.0"):
        with pytest.raises(ValidationError, match="rating"):
            FeedbackRequest.model_validate_json(f'{{"target_id": "{"0" * 32}", "rating": {rating}}}')
    assert FeedbackRequest.model_validate_json(f'{{"target_id": "{"0" * 32}", "rating": -1}}').rating == -1


@pytest.mark.parametrize("message", ["a\x00b", "\x00", "bell\x07", "  \n "])
def test_chat_messages_refuse_control_characters(message):
    with pytest.raises(ValidationError, match="message"):
        ChatRequest.model_validate_json(json.dumps({"session_id": "s1", "message": message}))


def test_chat_messages_keep_line_breaks_tabs_and_any_script():
    for message in ("line one\nline two\ttab\r\n", "¿Dónde está mi pedido?", "注文はどこ"):
        assert ChatRequest(session_id="s1", message=message).message == message


def test_served_log_knows_what_was_served_lately(settings):
    landing = LandingLog(settings)
    served = ServedLog(settings.landing_dir, days=2)
    assert "a" * 32 not in served  # nothing served yet, no folder
    landing.write("served", {"rec_id": "a" * 32, "items": ["i1"]})
    assert "a" * 32 in served and "b" * 32 not in served
    landing.write("served", {"rec_id": "b" * 32, "items": []})
    assert "b" * 32 in served  # appended after the first read: read incrementally
    old = datetime.now(UTC) - timedelta(days=3)
    landing.write("served", {"rec_id": "c" * 32}, now=old)
    assert "c" * 32 not in served  # outside the window
    # A line still being written is not read as a broken line, and is found once complete.
    # Today's file: the folder of three days ago holds one too, and rglob's order is the disk's.
    today = datetime.now(UTC).date().isoformat()
    path = next((settings.landing_dir / "served" / today).glob("*.jsonl"))
    with open(path, "a") as handle:
        handle.write('{"rec_id": "' + "d" * 32)
    assert "d" * 32 not in served
    with open(path, "a") as handle:
        handle.write('"}\n')
    assert "d" * 32 in served


def test_a_rec_id_the_recommender_served_is_known_to_the_feedback_check(shop_settings, recommender_tag):
    """What the recommender engine logs is what the support service checks feedback against."""
    import asyncio

    from serving.catalog import Catalog
    from serving.recommender.engine import RecommenderEngine, load_model, open_online_store
    from serving.recommender.schemas import RecommendRequest as Rec

    engine = RecommenderEngine(
        load_model(shop_settings, recommender_tag),
        Catalog.load(shop_settings.warehouse_path),
        lambda: open_online_store(shop_settings),
        LandingLog(shop_settings),
    )
    try:
        rec_id = asyncio.run(engine.recommend(Rec(user_id="u0", k=2))).rec_id
    finally:
        engine.close()
    served = ServedLog(shop_settings.landing_dir)
    assert rec_id in served and "f" * 32 not in served
