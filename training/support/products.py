"""Product turns of the shopping assistant: search with the dialogue's constraints, facts from the catalog.

Two kinds of turn reach here (the router decides which):

- a **product request** ("headphones", "under 30", "not Acme", "something cheaper") updates
  the dialogue's ``Constraints`` and searches the catalog with them: the product words (head
  nouns of the catalog's titles) must be in a result's title, a brand asked for or excluded,
  a category or range ("Home", "the premium range"), a price bound, "cheaper" than the
  cheapest product shown; adjectives ("soft", "vintage") rank matching titles first. A new
  product word starts the constraints afresh. Nothing fits: the reply says so and the
  dialogue keeps what it had.
- a **product question** ("how much is the second one?", "is it in stock?", "who makes
  it?") is answered from the catalog row of the product it refers to among those shown
  last: an ordinal, "the last", "the cheapest", a product word of a shown title, else the
  product talked about last ("it", "that one"), else the first shown. An ordinal past the
  list, or no list yet, gets a plain answer and no invented fact.

Every price, stock state and brand a reply states is formatted from a ``Product`` of the
``ProductCatalog``, never generated. Plain Python over a ``search.engine.SearchEngine``; no HTTP.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import polars as pl

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
NUMBER = r"(\d+(?:[.,]\d{1,2})?)"
# Price bounds the shopper states: "under 30", "below $40", "less than 25 dollars", "max 60".
_MAX_PRICE = re.compile(
    rf"\b(?:under|below|less than|cheaper than|at most|max(?:imum)?|up to|no more than|within|<)\s*\$?\s*{NUMBER}"
)
_MIN_PRICE = re.compile(rf"\b(?:over|above|more than|at least|min(?:imum)?|>)\s*\$?\s*{NUMBER}")
_AROUND_PRICE = re.compile(rf"\b(?:around|about|roughly|approximately|~)\s*\$?\s*{NUMBER}")
_BETWEEN_PRICE = re.compile(rf"\bbetween\s*\$?\s*{NUMBER}\s*(?:and|-)\s*\$?\s*{NUMBER}")
# A bare "under 30"-less amount with a currency word: "30 dollars", "$30", "20 bucks".
_AMOUNT = re.compile(rf"(?:\$\s*{NUMBER}|\b{NUMBER}\s*(?:dollars?|bucks|usd|\$))")
_CHEAPER = re.compile(r"\b(?:cheaper|less expensive|lower price|more affordable|budget)\b")
_PRICIER = re.compile(r"\b(?:more expensive|pricier|higher end|fancier)\b")
_OTHER_BRAND = re.compile(
    r"\b(?:not that brand|other brands?|another brand|different brand|not this brand|not (?:from )?them)\b"
)
_NEGATION = re.compile(
    r"\b(?:not|no|except|without|but not|other than|anything but|avoid)\s+(?:from\s+|by\s+)?$"
)
_ORDINALS = {
    "first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
    "fifth": 5, "5th": 5, "sixth": 6, "6th": 6, "seventh": 7, "7th": 7, "eighth": 8, "8th": 8,
    "ninth": 9, "9th": 9, "tenth": 10, "10th": 10,
}  # fmt: skip
_NUMBERED = re.compile(r"(?:#|\bnumber\s+|\bno\.?\s*|\bitem\s+|\boption\s+)(\d{1,2})\b")
_LAST = re.compile(r"\b(?:last|final|bottom)\b")
_CHEAPEST = re.compile(r"\b(?:cheapest|least expensive|lowest price|most affordable)\b")
_DEAREST = re.compile(r"\b(?:most expensive|priciest|dearest)\b")
# What a product question asks; the first that matches wins, in this order.
_ATTRIBUTES = (
    ("compatibility", re.compile(r"\b(?:work with|works with|compatible|fit my|fits my|support(?:s)? )")),
    ("size", re.compile(r"\b(?:size|sizes|dimensions?|how big|how large|length|width|height)\b")),
    ("colour", re.compile(r"\b(?:colou?rs?|come in (?:black|blue|red|white|green|pink|grey|gray))\b")),
    ("in_stock", re.compile(r"\b(?:in stock|stock|available|availability|sold out|left)\b")),
    ("price", re.compile(r"\b(?:how much|price|prices|cost|costs|expensive|cheap)\b")),
    ("brand", re.compile(r"\b(?:brand|who makes|who made|made by|maker|manufacturer|publish\w*|from)\b")),
    (
        "description",
        re.compile(r"\b(?:what is|what's|tell me|describe|details|made of|any good|about|exactly)\b"),
    ),
)
# Words of a request that name no product: with English stop words, what is left of
# "show me something cheaper please" is nothing; of "a scented candle", "scented candle".
_FILLER = frozenset(
    """something anything everything nothing stuff thing things kind sort type one ones show
    want need looking look find get buy sell selling sold got like love prefer rather would could
    please also instead maybe perhaps else other another different same ok okay well actually
    cheap cheaper cheapest expensive price prices priced cost budget dollars dollar bucks usd eur
    range ranges option options brand brands make made model version item items product products
    good nice great new best better fine sure around about roughly under below less more than
    over above least most max maximum min minimum only just too very really possible friendly
    available anyone hey hi hello thanks thank while here now today""".split()
)
# How a reply that found nothing fitting every condition starts (with or without the nearest).
NOTHING_FITS = "Sorry, I couldn't find any"
SHOWN = 3  # products shown per answer (cards in the chat window)
SEARCH_DEPTH = 100  # results read before the dialogue's own filters (brand, product word)


@dataclass(frozen=True)
class Product:
    """One catalog row, as the assistant states it."""

    item_id: str
    title: str
    price: float | None
    currency: str | None
    in_stock: bool
    brand: str | None = None
    category: str | None = None
    description: str | None = None

    def fact_line(self) -> str:
        """The product's facts as the generator's prompt lists them (from the catalog row)."""
        by = f" by {self.brand}" if self.brand else ""
        stock = "in stock" if self.in_stock else "out of stock"
        return f"{self.title}{by}: {format_price(self.price, self.currency)}, {stock}"

    def card(self) -> dict:
        """What a site renders: the reply's structured ``products``."""
        return {
            "item_id": self.item_id,
            "title": self.title,
            "price": self.price,
            "currency": self.currency,
            "in_stock": self.in_stock,
            "brand": self.brand,
            "category": self.category,
        }


def format_price(price: float | None, currency: str | None) -> str:
    """A catalog price as a reply writes it: "$23.50", "23.50 EUR", or "no listed price"."""
    if price is None:
        return "no listed price"
    if currency in (None, "USD"):
        return f"${price:,.2f}"
    return f"{price:,.2f} {currency}"


def stock_text(in_stock: bool) -> str:
    return "in stock" if in_stock else "out of stock"


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@dataclass
class Vocabulary:
    """The catalog's words, found from its rows: brands, category levels, product words.

    A title's last word is a product word ("Lamp", "Mat"); its other words that are not the
    brand are modifiers ("Vintage", "Yoga"). All matched by their English stem.
    """

    brands: dict[str, str]  # lower-case name → as the catalog writes it
    top_categories: dict[str, str]  # stem → first level ("Home")
    sub_categories: dict[str, str]  # stem → second level ("Premium")
    nouns: dict[str, str]  # stem → word ("lamp")
    modifiers: dict[str, str]  # stem → word ("vintage")

    @classmethod
    def from_products(cls, products: list[Product]) -> Vocabulary:
        stem = _stemmer().stemWord
        brands = {p.brand.lower(): p.brand for p in products if p.brand}
        top, sub, nouns, modifiers = {}, {}, Counter(), Counter()
        for p in products:
            levels = [level.strip() for level in (p.category or "").split(">") if level.strip()]
            if levels:
                top[stem(levels[0].lower())] = levels[0]
            if len(levels) > 1:
                sub[stem(levels[1].lower())] = levels[1]
            words = WORD.findall(p.title.lower())
            brand_words = set(WORD.findall(p.brand.lower())) if p.brand else set()
            words = [w for w in words if w not in brand_words and not w.isdigit()]
            if words:
                nouns[words[-1]] += 1
                modifiers.update(words[:-1])
        noun_stems = {stem(w): w for w in nouns}
        return cls(
            brands=brands,
            top_categories=top,
            sub_categories=sub,
            nouns=noun_stems,
            modifiers={stem(w): w for w in modifiers if stem(w) not in noun_stems},
        )

    def router_vocabulary(self) -> dict:
        """The words ``training.support.router.router_examples`` fills its templates with."""
        return {
            "categories": sorted(self.top_categories.values()),
            "subcategories": sorted(self.sub_categories.values()) or ["Basics"],
            "brands": sorted(self.brands.values()),
            "adjectives": sorted(self.modifiers.values()) or ["new"],
            "nouns": sorted(self.nouns.values()),
        }


class ProductCatalog:
    """item_id → ``Product``: the facts replies state."""

    def __init__(self, products: dict[str, Product]):
        self.products = products
        self._vocabulary: Vocabulary | None = None

    def __len__(self) -> int:
        return len(self.products)

    def get(self, item_id: str) -> Product | None:
        return self.products.get(item_id)

    @property
    def vocabulary(self) -> Vocabulary:
        if self._vocabulary is None:
            self._vocabulary = Vocabulary.from_products(list(self.products.values()))
        return self._vocabulary

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> ProductCatalog:
        """From catalog rows (the warehouse's ``catalog`` table or a landed file); the latest
        row of an item wins when ``updated_at`` is there."""
        if "updated_at" in frame.columns:
            frame = frame.sort("updated_at", nulls_last=False)
        products = {}
        for row in frame.iter_rows(named=True):
            if not row.get("item_id") or not row.get("title"):
                continue
            price = row.get("price")
            products[row["item_id"]] = Product(
                item_id=row["item_id"],
                title=row["title"],
                price=None if price is None or price != price else round(float(price), 2),
                currency=row.get("currency"),
                in_stock=True if row.get("in_stock") is None else bool(row["in_stock"]),
                brand=row.get("brand"),
                category=row.get("category"),
                description=row.get("description"),
            )
        return cls(products)

    @classmethod
    def from_index(cls, index_path: Path) -> ProductCatalog:
        """The catalog rows a search index version was built from (its ``items.parquet``),
        listed items only: for a service that has no warehouse to read."""
        frame = pl.read_parquet(Path(index_path) / "items.parquet")
        if "listed" in frame.columns:
            frame = frame.filter(pl.col("listed"))
        return cls.from_frame(frame)


@dataclass
class Constraints:
    """What the products must be, for the whole dialogue so far."""

    nouns: list[str] = field(default_factory=list)  # product words (stems), one of them in the title
    words: list[str] = field(default_factory=list)  # the product words as the catalog writes them
    modifiers: list[str] = field(default_factory=list)  # preferred, not required ("soft")
    top_category: str | None = None
    sub_category: str | None = None
    brand: str | None = None
    exclude_brands: list[str] = field(default_factory=list)
    min_price: float | None = None
    max_price: float | None = None
    # The shopper's own words when they name no catalog word ("a gift for my niece").
    free_text: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.nouns or self.free_text or self.top_category or self.brand or self.modifiers)

    def query(self) -> str:
        parts = [*self.modifiers, *self.words]
        if self.brand:
            parts.insert(0, self.brand)
        if self.free_text and not self.words:
            parts.append(self.free_text)
        if not parts and self.top_category:
            parts.append(self.top_category)
        if not parts and self.sub_category:
            parts.append(self.sub_category)
        return " ".join(parts)

    def describe(self) -> str:
        """ "Kestrel soft yoga mats under $30, not by Acme" (what the shopper asked for)."""
        what = " ".join(self.modifiers + [_plural(w) for w in self.words]) or (
            f"“{self.free_text}”" if self.free_text else "products"
        )
        parts = [f"{self.brand} {what}" if self.brand else what]
        if self.top_category or self.sub_category:
            where = " > ".join(c for c in (self.top_category, self.sub_category) if c)
            parts.append(f"in {where}")
        if self.min_price is not None and self.max_price is not None:
            parts.append(f"between ${self.min_price:,.2f} and ${self.max_price:,.2f}")
        elif self.max_price is not None:
            parts.append(f"under ${self.max_price:,.2f}")
        elif self.min_price is not None:
            parts.append(f"over ${self.min_price:,.2f}")
        if self.exclude_brands:
            parts.append("not by " + " or ".join(self.exclude_brands))
        return " ".join(parts)


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word
    return word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"


@dataclass
class ProductState:
    """The product side of a dialogue, kept in the dialogue store between turns."""

    constraints: Constraints = field(default_factory=Constraints)
    shown: list[str] = field(default_factory=list)  # item ids of the last list shown, in order
    focus: str | None = None  # the product talked about last ("it", "that one")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> ProductState:
        if not values:
            return cls()
        return cls(
            Constraints(**values.get("constraints", {})),
            list(values.get("shown", [])),
            values.get("focus"),
        )


@dataclass
class ProductAnswer:
    text: str
    products: list[Product]
    state: ProductState
    # Why there are no products: "no_match", "no_index", "nothing_shown", "unknown_reference",
    # "no_match_shown"; "relaxed": nothing fitted every constraint, the nearest products are shown.
    problem: str | None = None


def _copy(c: Constraints) -> Constraints:
    return replace(
        c,
        nouns=list(c.nouns),
        words=list(c.words),
        modifiers=list(c.modifiers),
        exclude_brands=list(c.exclude_brands),
    )


def _is_filler(word: str) -> bool:
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return word in _FILLER or word in STOPWORDS_EN_PLUS or word.isdigit() or len(word) < 2 or "'" in word


def _number(text: str) -> float:
    return float(text.replace(",", "."))


class ProductAssistant:
    """Answers product requests and product questions; ``engine`` None: search is not available."""

    def __init__(self, engine, catalog: ProductCatalog | None, shown: int = SHOWN):
        self.engine = engine  # search.engine.SearchEngine or None
        self.catalog = catalog
        self.shown = shown
        self._stem = _stemmer().stemWord

    @property
    def available(self) -> bool:
        return self.engine is not None and self.catalog is not None and len(self.catalog) > 0

    def facts(self, state: ProductState, limit: int = 3) -> list[str]:
        """Fact lines of the products in the conversation (the one talked about last, then the
        last list shown), for a support answer's prompt; [] without a catalog."""
        if self.catalog is None:
            return []
        ids = list(dict.fromkeys([state.focus, *state.shown] if state.focus else state.shown))
        products = [p for p in (self.catalog.get(i) for i in ids) if p is not None]
        return [p.fact_line() for p in products[:limit]]

    # --- reading a message ---------------------------------------------------------------

    def _words(self, message: str) -> list[str]:
        text = message.lower()
        if self.engine is not None:
            text = self.engine.index.speller.correct(text)[0].lower()  # "hedphones" → "headphones"
        return WORD.findall(text.replace("-", " "))

    def parse(self, message: str, state: ProductState) -> Constraints:
        """The constraints after this request: the dialogue's, updated by the message."""
        vocab = self.catalog.vocabulary
        words = self._words(message)
        stems = [self._stem(w) for w in words]
        nouns = [s for s in dict.fromkeys(stems) if s in vocab.nouns]
        old = state.constraints
        if nouns:
            # A product word starts afresh: "what about a kite instead" drops the headphones' brand.
            c = Constraints(nouns=nouns, words=[vocab.nouns[s] for s in nouns])
        else:
            c = _copy(old)
            # Words the catalog does not know ("a scented candle", "a gift for my niece"): a new
            # request in the shopper's words, searched as they are.
            known = set(vocab.top_categories) | set(vocab.sub_categories) | set(vocab.modifiers)
            brand_words = {w for b in vocab.brands for w in WORD.findall(b)}
            unknown = [
                w
                for w, s in zip(words, stems, strict=True)
                if s not in known and w not in brand_words and not _is_filler(w)
            ]
            if unknown:
                c = Constraints(free_text=" ".join(unknown))
            elif old.empty:
                c.free_text = " ".join(message.split())
        self._apply(message.lower(), stems, c, state)
        return c

    def _apply(self, lower: str, stems: list[str], c: Constraints, state: ProductState) -> None:
        """The message's categories, modifiers, brands and prices onto ``c``."""
        vocab = self.catalog.vocabulary
        for s in dict.fromkeys(stems):
            if s in vocab.top_categories:
                c.top_category = vocab.top_categories[s]
            elif s in vocab.sub_categories:
                c.sub_category = vocab.sub_categories[s]
                if c.top_category is None:
                    c.top_category = self._shown_top(state)
            elif s in vocab.modifiers and vocab.modifiers[s] not in c.modifiers:
                c.modifiers.append(vocab.modifiers[s])
        self._brands(lower, c, state)
        self._prices(lower, c, state)

    def _shown_top(self, state: ProductState) -> str | None:
        tops = {(p.category or "").split(">")[0].strip() for p in self._products(state.shown)}
        return tops.pop() if len(tops) == 1 else None

    def _brands(self, lower: str, c: Constraints, state: ProductState) -> None:
        for key, brand in self.catalog.vocabulary.brands.items():
            for match in re.finditer(rf"\b{re.escape(key)}\b", lower):
                if _NEGATION.search(lower[: match.start()][-24:]):
                    if brand not in c.exclude_brands:
                        c.exclude_brands.append(brand)
                    if c.brand == brand:
                        c.brand = None
                else:
                    c.brand = brand
                    if brand in c.exclude_brands:
                        c.exclude_brands.remove(brand)
        if _OTHER_BRAND.search(lower):
            focus = self.catalog.get(state.focus) if state.focus else None
            shown = self._products(state.shown)
            target = c.brand or (focus.brand if focus else None) or (shown[0].brand if shown else None)
            if target and target not in c.exclude_brands:
                c.exclude_brands.append(target)
            if c.brand == target:
                c.brand = None

    def _prices(self, lower: str, c: Constraints, state: ProductState) -> None:
        shown_prices = [p.price for p in self._products(state.shown) if p.price is not None]
        if m := _BETWEEN_PRICE.search(lower):
            c.min_price, c.max_price = sorted((_number(m.group(1)), _number(m.group(2))))
            return
        if m := _AROUND_PRICE.search(lower):
            c.max_price = round(_number(m.group(1)) * 1.25, 2)
        elif m := _MAX_PRICE.search(lower):
            c.max_price = _number(m.group(1))
        elif (m := _AMOUNT.search(lower)) and not _MIN_PRICE.search(lower):
            c.max_price = _number(m.group(1) or m.group(2))
        elif _CHEAPER.search(lower) and shown_prices:
            # "something cheaper": below the cheapest one shown.
            c.max_price = round(min(shown_prices) - 0.01, 2)
        if m := _MIN_PRICE.search(lower):
            c.min_price = _number(m.group(1))
        elif _PRICIER.search(lower) and shown_prices:
            c.min_price = round(max(shown_prices) + 0.01, 2)

    # --- product requests ----------------------------------------------------------------

    def request(self, message: str, state: ProductState) -> ProductAnswer:
        if not self.available:
            return ProductAnswer(
                "Sorry, product search is not available right now, so I can't look that up. "
                "I can still help with orders, delivery, returns and your account.",
                [],
                state,
                "no_index",
            )
        constraints = self.parse(message, state)
        found, exact = self.find(constraints)
        shown, problem = constraints, None  # what the products on screen satisfy
        if not found and (nearest := self.relaxed(constraints)) is not None:
            shown, found = nearest
            problem = "relaxed"
        if not found:
            text = f"{NOTHING_FITS} {constraints.describe()} in our catalog."
            if constraints.exclude_brands or constraints.max_price is not None or constraints.brand:
                text += " Would you like me to drop one of those conditions?"
            else:
                text += " Could you describe it another way?"
            # The dialogue keeps what it had: the next "cheaper" reads the list still on screen.
            return ProductAnswer(text, [], state, "no_match")
        here = f"Here {'is' if len(found) == 1 else 'are'} {len(found)} {shown.describe()}"
        if problem == "relaxed":  # said plainly, then the nearest products
            lead = f"{NOTHING_FITS} {constraints.describe()}. {here} instead:"
        elif exact:
            lead = f"{here}:"
        else:
            lead = f"I found nothing that matches {constraints.describe()} exactly; the closest items are:"
        lines = [lead] + [self._line(i, p) for i, p in enumerate(found, 1)]
        return ProductAnswer(
            "\n".join(lines), found, ProductState(shown, [p.item_id for p in found], None), problem
        )

    @staticmethod
    def _line(position: int, p: Product) -> str:
        return f"{position}. {p.title} — {format_price(p.price, p.currency)}, {stock_text(p.in_stock)}"

    def relaxed(self, c: Constraints) -> tuple[Constraints, list[Product]] | None:
        """The nearest constraints that some products fit, and those products; None if none.

        Dropped one at a time, most specific first: the category when a product word is
        named (the word says more: "a home gym dumbbell" is no Home product), the brand, the
        range. Price bounds and excluded brands are the shopper's limits and stay.
        """
        steps = []
        if c.nouns and (c.top_category or c.sub_category):
            steps.append({"top_category": None, "sub_category": None})
        if c.brand:
            steps.append({"brand": None})
        if c.sub_category:
            steps.append({"sub_category": None})
        for dropped in steps:
            candidate = replace(_copy(c), **dropped)
            found, exact = self.find(candidate)
            if found and exact:
                return candidate, found
        return None

    def find(self, c: Constraints) -> tuple[list[Product], bool]:
        """Up to ``shown`` products that satisfy ``c``, and whether they match its words
        (False: the query named no catalog word and nothing matched it lexically)."""
        from search.engine import Filters

        query = c.query() or "popular"
        filters = Filters(category=c.top_category, min_price=c.min_price, max_price=c.max_price)
        result = self.engine.search(query, SEARCH_DEPTH, filters)
        picked, lexical = [], False
        for hit in result.hits:
            p = self.catalog.get(hit.item_id)
            if p is None or not self._fits(p, c):
                continue
            picked.append(p)
            lexical |= hit.lexical_rank is not None
        if c.modifiers:
            wanted = {m.lower() for m in c.modifiers}
            # Stable: search order within those that have more of the wanted words.
            picked.sort(key=lambda p: -len(wanted & set(WORD.findall(p.title.lower()))))
        exact = bool(c.nouns or c.brand or c.top_category) or lexical
        return picked[: self.shown], exact

    def _fits(self, p: Product, c: Constraints) -> bool:
        """The catalog row (not the index's copy) against every hard constraint."""
        if c.nouns and not set(c.nouns) & {self._stem(w) for w in WORD.findall(p.title.lower())}:
            return False
        if c.brand and p.brand != c.brand:
            return False
        if p.brand in c.exclude_brands:
            return False
        levels = [level.strip() for level in (p.category or "").split(">")]
        if c.top_category and levels[0].lower() != c.top_category.lower():
            return False
        if c.sub_category and (len(levels) < 2 or levels[1].lower() != c.sub_category.lower()):
            return False
        if c.max_price is not None and (p.price is None or p.price > c.max_price):
            return False
        return not (c.min_price is not None and (p.price is None or p.price < c.min_price))

    # --- product questions ---------------------------------------------------------------

    def _products(self, item_ids: list[str]) -> list[Product]:
        if self.catalog is None:
            return []
        return [p for p in (self.catalog.get(i) for i in item_ids) if p is not None]

    def question(self, message: str, state: ProductState) -> ProductAnswer:
        if self.catalog is None:
            return ProductAnswer("Sorry, I can't look up product details right now.", [], state, "no_index")
        shown = self._products(state.shown)
        if not shown:
            return ProductAnswer(
                "I haven't shown you any products yet. Tell me what you're looking for and I'll find some.",
                [],
                state,
                "nothing_shown",
            )
        lower = message.lower()
        product, problem = self.resolve(lower, shown, state)
        if product is None:
            listing = "; ".join(f"{i}. {p.title}" for i, p in enumerate(shown, 1))
            if problem == "unknown_reference":
                text = (
                    f"I showed you {len(shown)} product{'s' if len(shown) > 1 else ''}: {listing}. "
                    "Which one do you mean?"
                )
            else:
                text = f"None of the products I showed you is that: {listing}. Shall I search for it?"
            return ProductAnswer(text, shown, state, problem)
        text = self.answer(lower, product)
        return ProductAnswer(text, [product], replace(state, focus=product.item_id))

    def resolve(
        self, lower: str, shown: list[Product], state: ProductState
    ) -> tuple[Product | None, str | None]:
        """The shown product the message means, or (None, why)."""
        position = None
        for word in WORD.findall(lower):
            if word in _ORDINALS:
                position = _ORDINALS[word]
                break
        if position is None and (m := _NUMBERED.search(lower)):
            position = int(m.group(1))
        if position is not None:
            if not 1 <= position <= len(shown):
                return None, "unknown_reference"
            return shown[position - 1], None
        if _LAST.search(lower):
            return shown[-1], None
        priced = [p for p in shown if p.price is not None]
        if _CHEAPEST.search(lower) and priced:
            return min(priced, key=lambda p: p.price), None
        if _DEAREST.search(lower) and priced:
            return max(priced, key=lambda p: p.price), None
        vocab = self.catalog.vocabulary
        asked = [s for s in (self._stem(w) for w in WORD.findall(lower)) if s in vocab.nouns]
        if asked:
            for p in shown:
                if set(asked) & {self._stem(w) for w in WORD.findall(p.title.lower())}:
                    return p, None
            return None, "no_match_shown"
        focus = self.catalog.get(state.focus) if state.focus in state.shown else None
        return focus or shown[0], None

    def answer(self, lower: str, p: Product) -> str:
        attribute = next((name for name, pattern in _ATTRIBUTES if pattern.search(lower)), None)
        price, stock = format_price(p.price, p.currency), stock_text(p.in_stock)
        if attribute == "brand" or (attribute is None and self._named_brand(lower)):
            named = self._named_brand(lower)
            by = f"by {p.brand}" if p.brand else "listed without a brand"
            if named and named != p.brand:
                return f"No — the {p.title} is {by}, not {named}."
            if named:
                return f"Yes, the {p.title} is by {p.brand}."
            return f"The {p.title} is {by}."
        if attribute == "price":
            return f"The {p.title} costs {price} and is {stock}."
        if attribute == "in_stock":
            if p.in_stock:
                return f"Yes, the {p.title} is in stock ({price})."
            return f"The {p.title} is out of stock at the moment ({price})."
        about = f" Our catalog says: {p.description}" if p.description else ""
        if attribute in ("size", "colour", "compatibility"):
            what = {"size": "sizes", "colour": "colours", "compatibility": "compatibility"}[attribute]
            return f"Our catalog doesn't list {what} for the {p.title}.{about}"
        if attribute == "description":
            said = f" — {_sentence(p.description)}" if p.description else ""
            return f"The {p.title}{said} It costs {price} and is {stock}."
        return f"The {p.title}{f' by {p.brand}' if p.brand else ''} costs {price} and is {stock}."

    def _named_brand(self, lower: str) -> str | None:
        for key, brand in self.catalog.vocabulary.brands.items():
            if re.search(rf"\b{re.escape(key)}\b", lower):
                return brand
        return None


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text if text.endswith((".", "!", "?")) else text + "."
