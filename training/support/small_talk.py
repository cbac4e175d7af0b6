"""Short replies for turns that ask for nothing: small talk and what the shop cannot help with.

The router says a turn is small talk; which kind (a greeting, thanks, an acknowledgement, a
goodbye, "how are you") is read from its words here, and each kind has one short reply. Never
a knowledge-base article, never a handover.
"""

from __future__ import annotations

import re

from data_contracts.shop import ShopProfile

_KINDS = (
    ("goodbye", re.compile(r"\b(bye|goodbye|see (?:you|ya)|have a (?:nice|good|great) (?:day|one|evening)|that'?s all|take care|good night|cya)\b")),
    ("thanks", re.compile(r"\b(thanks?|thank you|thx|ty|cheers|appreciated?|grateful)\b")),
    ("how_are_you", re.compile(r"\b(how are you|how's it going|how are things|how do you do)\b")),
    ("greeting", re.compile(r"^\W*(hi|hello|hey|hiya|howdy|good (?:morning|afternoon|evening)|greetings)\b")),
)  # fmt: skip


def small_talk_kind(message: str) -> str:
    """greeting, how_are_you, thanks, goodbye, or acknowledgement (anything else)."""
    lower = message.lower()
    for kind, pattern in _KINDS:
        if pattern.search(lower):
            return kind
    return "acknowledgement"


def small_talk_reply(message: str, profile: ShopProfile) -> str:
    kind = small_talk_kind(message)
    if kind == "goodbye":
        thanked = _KINDS[1][1].search(message.lower())
        return (
            f"{'You are welcome! ' if thanked else ''}Thanks for visiting {profile.name}, have a great day!"
        )
    if kind == "thanks":
        return "You're welcome! Is there anything else I can help with?"
    if kind == "how_are_you":
        return "I'm doing well, thanks for asking! What can I help you with today?"
    if kind == "greeting":
        return f"Hello! Welcome to {profile.name}. Are you looking for something, or do you have a question about an order?"
    return "Alright! Let me know if there's anything else I can help with."


def out_of_scope_reply(profile: ShopProfile) -> str:
    return (
        f"Sorry, I can't help with that. I can help you find products at {profile.name}, "
        "or with orders, delivery, returns and your account."
    )
