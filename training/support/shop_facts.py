"""Questions about the shop itself, answered from its profile, not from the knowledge base.

"What's your phone number?", "when are you open?", "how long do I have to return it?",
"how long does delivery take?": the knowledge base answers these in general words ("within
the specified return period") and the ranker is rarely sure of them, so they were handed over
to a human although the shop's profile (``data_contracts.shop.ShopProfile``) holds the answer.
``shop_fact_reply`` answers them in one or two sentences built from the profile's fields.

Only questions that ask for a fact match: the patterns name the fact together with who has it
("your phone number", "call you", "your return policy") or a question about it ("how long does
delivery take"), so "I didn't get the email" or "change the phone number on my account" are
not mistaken for one. A fact the profile has no value for is not answered here; the question
takes the usual path. English patterns: the shop's other languages take the usual path too.
"""

from __future__ import annotations

import re

from data_contracts.shop import ShopProfile

_DAYS = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|tomorrow|the weekend|christmas)"
# Fact → what asks for it, in the order the answer states them.
FACT_QUESTIONS: dict[str, re.Pattern] = {
    "contact": re.compile(
        r"\b(?:how (?:can|do) i (?:contact|reach|get in touch with)(?! (?:a |an )?(?:human|agent|person))|"
        r"(?:contact|reach|get in touch with) (?:you|your (?:customer )?(?:service|support)|customer (?:service|support)"
        r"|the shop)|contact (?:details|info(?:rmation)?|options)|ways to contact)\b"
    ),
    "phone": re.compile(
        r"\b(?:your (?:tele)?phone(?: number)?|(?:support|service|hotline|contact) (?:phone|number)|phone support|"
        r"(?:can|could) i (?:call|phone|ring) (?:you|someone|support)|number (?:i can|to) call|call you)\b"
    ),
    "email": re.compile(
        r"\b(?:your e-?mail(?: address)?|(?:support|service|contact) e-?mail|e-?mail (?:you|support|customer)|"
        r"write to you|(?:contact|reach) (?:you|support) (?:by|via|through) e-?mail)\b"
    ),
    "hours": re.compile(
        r"\b(?:opening hours|open hours|business hours|support hours|your hours|working hours|"
        r"when (?:are|is) (?:you|your \w+|the \w+ (?:team|service)) (?:open|available)|are you open|"
        r"what time (?:do|does) (?:you|support|the shop) (?:open|close))\b"
    ),
    "return_window": re.compile(
        r"\b(?:returns? policy|return period|return window|returns? (?:time|deadline)|"
        r"how (?:long|many days) (?:do|will) i have to (?:return|send)|"
        r"(?:can|could) i (?:return|send back) (?:it|them|this|that|an item|items|something)|"
        r"(?:can|could) i send (?:it|them|this|that) back)\b"
    ),
    "refund_time": re.compile(
        r"\b(?:how long (?:does|will|do) (?:the |my |a )?refunds? take|when (?:will|do) i get (?:my )?(?:money|refund)"
        r"|refunds? (?:time|takes?))\b"
    ),
    "delivery": re.compile(
        r"\b(?:how (?:long|fast|quickly) (?:does|will|do|is) (?:the |your |standard |express )?"
        r"(?:delivery|shipping|it (?:take to )?(?:arrive|ship|be delivered))|"
        r"(?:delivery|shipping) (?:options|times?|methods|speeds?)|express (?:delivery|shipping)|"
        r"deliver(?:y|ed)? (?:by|before|on) " + _DAYS + r"|(?:arrive|get it) (?:by|before) " + _DAYS + r")\b"
    ),
    "website": re.compile(r"\b(?:your (?:website|web site|site|web address|url)|website address)\b"),
}


def asked_facts(message: str) -> list[str]:
    """The profile facts ``message`` asks for, in ``FACT_QUESTIONS`` order."""
    lower = " ".join(message.lower().replace("’", "'").split())
    return [fact for fact, pattern in FACT_QUESTIONS.items() if pattern.search(lower)]


def _join(items: list[str], word: str = "or") -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {word} " + items[-1]


def _channels(profile: ShopProfile) -> list[str]:
    channels = []
    if profile.support_phone:
        channels.append(f"by phone at {profile.support_phone}")
    if profile.support_email:
        channels.append(f"by e-mail at {profile.support_email}")
    if profile.live_chat:
        where = f" on {profile.site_url}" if profile.site_url else ""
        channels.append(f"through the {profile.live_chat}{where}")
    return channels


def _sentence(fact: str, profile: ShopProfile) -> str | None:
    """One fact as a sentence, or None when the profile has no value for it."""
    hours = f" ({profile.support_hours})" if profile.support_hours else ""
    if fact == "contact" and (channels := _channels(profile)):
        return f"You can reach {profile.name}'s support team {_join(channels)}{hours}."
    if fact == "phone" and profile.support_phone:
        return f"You can call us at {profile.support_phone}{hours}."
    if fact == "email" and profile.support_email:
        return f"You can write to us at {profile.support_email}."
    if fact == "hours" and profile.support_hours:
        return f"Our support team is available {profile.support_hours}."
    if fact == "return_window" and profile.return_window_days:
        return f"You can return an item within {profile.return_window_days} days of delivery."
    if fact == "refund_time" and profile.refund_time:
        return f"Once your return reaches us, the refund takes {profile.refund_time}."
    if fact == "delivery" and profile.delivery_options:
        return f"We offer {_join(list(profile.delivery_options), 'and')}."
    if fact == "website" and profile.site_url:
        return f"Our website is {profile.site_url}."
    return None


def shop_fact_reply(message: str, profile: ShopProfile) -> tuple[str, list[str]] | None:
    """The reply to a question about the shop's own facts, and the facts stated; None when the
    message asks for none, or for none the profile holds."""
    asked = asked_facts(message)
    facts = list(asked)
    if "contact" in facts:
        # "contact you by email": the channel asked for; else every channel, with the hours.
        facts = (
            [f for f in facts if f != "contact"]
            if {"phone", "email"} & set(facts)
            else [f for f in facts if f != "hours"]
        )
    if "return_window" in facts and "refund_time" not in facts:
        facts.append("refund_time")  # what a shopper asking about returns wants to know next
    stated = [(f, s) for f in facts if (s := _sentence(f, profile))]
    if not any(f in asked for f, _ in stated):
        return None
    return " ".join(s for _, s in stated), [f for f, _ in stated]
