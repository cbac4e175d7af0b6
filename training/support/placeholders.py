"""From a candidate reply (a KB answer or generated text) to what the shopper reads.

Bitext answers are full of stand-ins: ``{{Website Name}}``, ``{{Order Number}}``,
``[Customer Support Phone Number]``, ``{{number of days}}``, and literal example order
numbers copied from the question they answered. ``fill_reply`` turns each into something true:

- the shopper's own data (order, invoice or tracking number, purchase date, payment method)
  is filled from what the shopper said, or becomes "your order" and a question at the end;
  the shopper's name is filled or left out;
- a shop fact (name, site, phone, e-mail, live chat, hours, return window, refund time) is
  filled from the ``ShopProfile``; one the shop has no value for is left out: taken out of
  its list ("A, B or C") or, when it stands alone, with its sentence;
- a site label such as ``{{Order History}}`` (a section or button) is written as its name;
  any other stand-in ("Case 1", "X to Y", "provide instructions to ...") goes with its sentence;
- a number of five or more digits (or ``#`` and digits) that the shopper did not write is an
  example from the corpus and is treated as the order (or invoice) placeholder.

``leaks`` finds what must never reach a shopper; ``fill_reply`` drops any sentence that
still has one, so its result never contains a leak. A generated reply first goes through
``clean_generated``: its unfinished last sentence and any sentence stating contact details or
a price of its own are dropped.
"""

from __future__ import annotations

import re

from data_contracts.shop import ShopProfile

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
# A bracketed stand-in: [Some Name], but not a Markdown link [text](url).
BRACKETED = re.compile(r"\[([^\[\]\n]{2,80})\](?!\()")
# Names that are stand-ins when written bare (the old fill wrote "visit Website Name").
BARE_NAMES = (
    "Website Name",
    "Website URL",
    "Company Name",
    "App Name",
    "Customer Support Phone Number",
    "Customer Support Email",
    "Customer Support Availability",
    "Customer Support Hours",
    "Anonymized",
)
_BARE = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in BARE_NAMES) + r")\b")
EXAMPLE_NUMBER = re.compile(r"#?\b\d{5,}\b|#\d+\b")

# The shopper's data; the question asked when it is missing.
SLOT_QUESTIONS = {
    "order_number": "your order number",
    "invoice_number": "your invoice number",
    "tracking_number": "the tracking number of your parcel",
    "purchase_date": "the date of your purchase",
    "payment_method": "how you paid",
    "email": "the email address on your account",
    "name": "your full name",
}
# What a missing slot reads as inside the reply ("cancel order {{Order Number}}" → "cancel your order").
SLOT_REFERENCES = {
    "order_number": "your order",
    "invoice_number": "your invoice",
    "tracking_number": "your tracking number",
    "purchase_date": "your purchase date",
    "payment_method": "your payment method",
}
_SLOT_NAMES = {
    "order number": "order_number",
    "order id": "order_number",
    "purchase id": "order_number",
    "purchase number": "order_number",
    "invoice number": "invoice_number",
    "invoice id": "invoice_number",
    "bill number": "invoice_number",
    "tracking number": "tracking_number",
    "purchase date": "purchase_date",
    "payment method": "payment_method",
    "name": "name",
    "name field": "name",
    "full name": "name",
    "person name": "name",
    "client first name": "name",
    "client last name": "name",
}
# Words before a slot placeholder that its reference replaces: "order #{{Order Number}}".
_LEAD = {
    "order_number": r"(?:(?:the|your)\s+)?(?:(?:order|purchase)\s+)?(?:(?:number|id|no\.?|reference number)\s+)?#?",
    "invoice_number": r"(?:(?:the|your)\s+)?(?:(?:invoice|bill)\s+)?(?:(?:number|id|no\.?)\s+)?#?",
}
_SITE_NAMES = {
    "website name",
    "company name",
    "website/app name",
    "website or app",
    "mobile app name",
    "app name",
}
_SITE_URLS = {"website url", "website", "company website", "service website", "site", "web site"}
_CHAT = {"live chat", "chat", "support channel", "customer support channel"}
_DROP = "\x00"


def _label(name: str) -> str:
    return re.sub(r"\s+anonymized$", "", name.strip(), flags=re.I).strip()


def classify(name: str) -> tuple[str, str | None]:
    """("slot", slot) | ("fact", profile field) | ("label", text) | ("drop", None) for a stand-in."""
    label = _label(name)
    low = label.lower()
    if low in _SLOT_NAMES:
        return "slot", _SLOT_NAMES[low]
    if "phone" in low:
        return "fact", "support_phone"
    if "email" in low or low == "e-mail":
        return "fact", "support_email"
    if low in _CHAT:
        return "fact", "live_chat"
    if low in _SITE_NAMES:
        return "fact", "name"
    if low in _SITE_URLS:
        return "fact", "site_url"
    if ("hours" in low or "availability" in low) and "time" not in low:
        return "fact", "support_hours"
    if low in ("number of days", "refund period", "return period", "return window"):
        return "fact", "return_window_days"
    if low in ("refund timeframe", "refund processing time", "refund processing time frame", "x to y"):
        return "fact", "refund_time"
    # A site section or button: a few capitalised words, no digits ("Order History", "Contact Us").
    words = label.split()
    if 0 < len(words) <= 4 and all(re.fullmatch(r"[A-Z][A-Za-z&'/-]*", w) for w in words):
        return "label", label
    return "drop", None


def _fact(profile: ShopProfile, field: str) -> str | None:
    value = getattr(profile, field)
    if value is None or value == "":
        return None
    return str(value)


def leaks(text: str) -> list[str]:
    """Every stand-in in ``text`` that must not reach a shopper."""
    found = [m.group(0) for m in PLACEHOLDER.finditer(text)]
    found += [m for m in ("{{", "}}") if m in text and not found]
    found += [m.group(0) for m in BRACKETED.finditer(text)]
    rest = BRACKETED.sub(" ", PLACEHOLDER.sub(" ", text))
    found += [m.group(0) for m in _BARE.finditer(rest)]
    return found


def _sentences(text: str) -> list[str]:
    # Sentences and list lines, with the whitespace that follows each ("1." ends none).
    return [s for s in re.findall(r".*?(?:(?<!\d)[.!?](?=\s)|\n|$)\s*", text, flags=re.S) if s]


def _drop_marked(text: str) -> str:
    """Take each marked stand-in out of its list, or out with its sentence."""
    text = re.sub(r"\s*,\s*(?:(?:or|and)\s+)?" + _DROP, "", text)
    text = re.sub(r"\s+(?:or|and)\s+" + _DROP, "", text)
    text = re.sub(_DROP + r"\s*(?:,\s*|\s+(?:or|and)\s+)", "", text)
    return "".join(s for s in _sentences(text) if _DROP not in s)


def fill_reply(
    text: str, slots: dict[str, str], profile: ShopProfile, said: str = ""
) -> tuple[str, list[str]]:
    """The reply with every stand-in resolved, and the shopper's data still to ask for.

    ``slots``: what the shopper told (order_number, ...); ``said``: the shopper's messages,
    so a number they wrote is kept and any other long number is taken for an example.
    """
    missing: list[str] = []
    given = set(re.findall(r"\d+", said)) | {v for v in slots.values() if v}

    def example_number(match: re.Match) -> str:
        digits = match.group(0).lstrip("#")
        if digits in given:
            return match.group(0)
        before = text[max(0, match.start() - 40) : match.start()].lower()
        kind = "Invoice Number" if re.search(r"invoice|bill", before) else "Order Number"
        return "{{" + kind + "}}"

    text = EXAMPLE_NUMBER.sub(example_number, text)
    # "[{{Website Name}}]" is one stand-in, not two.
    text = re.sub(r"\[\s*(\{\{[^{}]+\}\})\s*\]", r"\1", text)
    # "visit our {{Website Name}}" is the shop's website; "your {{Website Name}} account" its name.
    text = re.sub(
        r"(\{\{\s*Website Name\s*\}\})(?!\s+(?:account|app|website|site|platform|team|store|shop|customer))",
        r"\1 website",
        text,
    )

    def slot_value(slot: str, lead: str) -> str:
        if slots.get(slot):
            return lead + slots[slot]
        if slot == "name":
            return _DROP
        if slot not in missing:
            missing.append(slot)
        # "cancel order {{Order Number}}" → "cancel your order"; a bare one → "your order number".
        return SLOT_REFERENCES[slot] if lead.strip() and slot in SLOT_REFERENCES else SLOT_QUESTIONS[slot]

    def resolve(name: str, lead: str = "") -> str:
        kind, what = classify(name)
        if kind == "slot":
            return slot_value(what, lead)
        if kind == "fact":
            value = _fact(profile, what)
            return lead + value if value is not None else lead + _DROP
        if kind == "label":
            return lead + what
        return lead + _DROP

    # A slot with the words that introduce it ("cancel order #{{Order Number}}"), then the rest.
    for slot, lead in _LEAD.items():
        pattern = re.compile(r"(?<![\w#])(" + lead + r")\{\{\s*([^{}]+?)\s*\}\}", re.I)

        def with_lead(m: re.Match, slot: str = slot) -> str:
            if classify(m.group(2)) != ("slot", slot):
                return m.group(0)
            return resolve(m.group(2), m.group(1))

        text = pattern.sub(with_lead, text)
    text = PLACEHOLDER.sub(lambda m: resolve(m.group(1)), text)
    text = BRACKETED.sub(
        lambda m: resolve(m.group(1)) if classify(m.group(1))[0] in ("fact", "slot") else _DROP, text
    )
    text = _drop_marked(text)
    # The last guard: a sentence that still holds a stand-in does not reach the shopper.
    text = "".join(s for s in _sentences(text) if not leaks(s))
    # A value that carries its unit before the corpus's own unit: "5 to 10 business days days".
    text = re.sub(r"\b((?:business |working )?days)\s+(?:business |working )?days\b", r"\1", text)
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    return text, missing


def ask_for(missing: list[str]) -> str:
    if not missing:
        return ""
    things = [SLOT_QUESTIONS[m] for m in missing]
    listed = things[0] if len(things) == 1 else ", ".join(things[:-1]) + " and " + things[-1]
    return f"Could you tell me {listed}?"


# What a generated reply must not state on its own: contact details and prices come from the
# shop profile (through its placeholders) and the catalog, never from the language model.
_URL = re.compile(r"https?://\S+|\bwww\.\S+|\b[\w-]+\.(?:com|net|org|io|co|shop|store)\b", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")
_PHONE = re.compile(r"\+?\(?\d[\d\s().-]{6,}\d")
_PRICE = re.compile(r"[$€£]\s?\d|\b\d+(?:[.,]\d+)?\s?(?:USD|EUR|GBP|dollars|euros)\b", re.I)
_SENTENCE_END = re.compile(r"(?<!\d)[.!?](?=\s|$)|\n")


def clean_generated(text: str, profile: ShopProfile) -> str:
    """A generated reply as a candidate: cut after its last complete sentence (a reply stopped
    at ``max_new_tokens`` ends mid-sentence) and without the sentences that state a URL, an
    e-mail address, a phone number or a price the shop profile does not hold. "" when nothing
    is left. ``fill_reply`` then resolves its placeholders like a retrieved answer's."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if not ends:
        return ""
    text = text[: ends[-1]]
    known = {str(v) for v in (profile.site_url, profile.support_email, profile.support_phone) if v}

    def invented(sentence: str) -> bool:
        for pattern in (_URL, _EMAIL, _PHONE):
            for m in pattern.finditer(sentence):
                if not any(m.group(0).rstrip(".,;:)") in k or k in m.group(0) for k in known):
                    return True
        return bool(_PRICE.search(sentence))

    return "".join(s for s in _sentences(text) if not invented(s)).strip()
