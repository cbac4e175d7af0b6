"""The support data contract: how support text is normalised, and the rule for feedback rows.

Schemas of the support corpus (Q&A pairs, KB articles, feedback pairs) are in
``data_contracts.schemas`` beside the others. A feedback row is a ranker training pair: the
dialogue context a reply answered, the reply, and the shopper's thumbs up (+1) or down (-1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import polars as pl

from data_contracts.schemas import SUPPORT_FEEDBACK_SCHEMA


class FeedbackError(ValueError):
    """A feedback row breaks the contract (reply_id, rating +1/-1, context and reply)."""


def clean_text(text: str | None, keep_lines: bool = False) -> str:
    """Strip, unify line ends and collapse runs of blanks (keeping line breaks in answers)."""
    if text is None:
        return ""
    text = str(text).replace("\r\n", "\n").replace("\r", "\n")
    if not keep_lines:
        return re.sub(r"\s+", " ", text).strip()
    lines = [re.sub(r"[ \t\f\v]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def validate_feedback_row(row: dict) -> dict:
    """One feedback row in canonical form, or a FeedbackError that says what is wrong."""
    if not isinstance(row, dict):
        raise FeedbackError(f"a feedback row must be a mapping, not {type(row).__name__}")
    reply_id = clean_text(row.get("reply_id"))
    if not reply_id:
        raise FeedbackError("feedback row has no reply_id")
    rating = row.get("rating")
    try:
        rating_int = int(rating)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FeedbackError(f"reply {reply_id}: rating must be +1 or -1, not {rating!r}") from None
    if rating_int not in (1, -1) or (isinstance(rating, float) and rating != rating_int):
        raise FeedbackError(f"reply {reply_id}: rating must be +1 or -1, not {rating!r}")
    context = clean_text(row.get("context"))
    reply = clean_text(row.get("reply"), keep_lines=True)
    if not context or not reply:
        raise FeedbackError(f"reply {reply_id}: feedback needs the dialogue context and the reply")
    return {
        "reply_id": reply_id,
        "rating": rating_int,
        "reason": clean_text(row.get("reason")) or None,
        "context": context,
        "reply": reply,
        "category": clean_text(row.get("category")).upper() or None,
    }


def read_feedback(rows: Iterable[dict]) -> tuple[pl.DataFrame, list[dict]]:
    """Valid feedback rows (the last rating of a reply wins) and the rejected rows with reasons."""
    valid: dict[str, dict] = {}
    rejected = []
    for index, row in enumerate(rows):
        # Landing files mix feedback on recommendations in; those belong to the recommender.
        if isinstance(row, dict) and row.get("target_kind") not in (None, "reply"):
            continue
        try:
            clean = validate_feedback_row(row)
        except FeedbackError as exc:
            rejected.append({"row": index, "reason": str(exc)})
            continue
        valid[clean["reply_id"]] = clean
    return pl.DataFrame(list(valid.values()), schema=SUPPORT_FEEDBACK_SCHEMA), rejected
