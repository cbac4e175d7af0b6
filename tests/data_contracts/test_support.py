"""The support data contract: text normalisation and the feedback-row rule."""

from __future__ import annotations

import pytest

from data_contracts.support import FeedbackError, clean_text, read_feedback, validate_feedback_row


def test_clean_text_collapses_blanks_and_keeps_answer_lines():
    assert clean_text("  where   is\tmy order?\r\n") == "where is my order?"
    assert (
        clean_text("Step 1.  Log in \r\n\r\n\r\n\r\nStep 2.", keep_lines=True) == "Step 1. Log in\n\nStep 2."
    )
    assert clean_text(None) == ""


GOOD = {"reply_id": "r1", "rating": -1, "reason": "wrong", "context": "where is my order", "reply": "Hello"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"reply_id": ""}, "no reply_id"),
        ({"rating": 0}, r"\+1 or -1"),
        ({"rating": "up"}, r"\+1 or -1"),
        ({"rating": 1.5}, r"\+1 or -1"),
        ({"rating": None}, r"\+1 or -1"),
        ({"context": " "}, "context and the reply"),
        ({"reply": None}, "context and the reply"),
    ],
)
def test_malformed_feedback_rows_are_rejected_with_a_reason(change, message):
    with pytest.raises(FeedbackError, match=message):
        validate_feedback_row({**GOOD, **change})


def test_read_feedback_skips_recommendation_feedback_and_rejects_non_mappings():
    frame, rejected = read_feedback([{**GOOD, "target_kind": "recommendation", "rating": 9}])
    assert frame.height == 0 and rejected == []
    frame, rejected = read_feedback(["not a mapping"])
    assert frame.height == 0 and "mapping" in rejected[0]["reason"]
    frame, rejected = read_feedback([GOOD, {**GOOD, "rating": 1}])
    assert frame["rating"].to_list() == [1] and rejected == []
