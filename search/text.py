"""What is indexed of an item, and how query words meet catalog words.

Both sides are tokenised the same way: lower case, English stop words out, Snowball stems,
so "lamps" finds "lamp". A query word the catalog does not know is first corrected to the
nearest catalog word (SymSpell, a bounded edit distance), so "hedphones" finds "headphones".
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable

import bm25s
import Stemmer
from symspellpy import SymSpell, Verbosity

WORD = re.compile(r"\w+")
TEXT_COLUMNS = ("title", "description", "category", "brand")


def item_text(title: str | None, description: str | None, category: str | None, brand: str | None) -> str:
    """The text both indexes read: title, brand, category path, then the description."""
    parts = [title, brand, category.replace(" > ", ", ") if category else None, description]
    return ". ".join(p.strip() for p in parts if p and p.strip())


def dense_text(title: str | None, category: str | None, brand: str | None) -> str:
    """The text the encoder embeds: what the product is (title, brand, category path).

    The description is left to BM25: its words are all indexed there, while embedding them
    would double the tokens per item (the cost of a build) for a vector that mostly restates
    the title.
    """
    return item_text(title, None, category, brand)


def text_hash(text: str) -> str:
    """Identifies an item's embedded text: an unchanged hash means its vector can be kept."""
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class Tokenizer:
    """The one tokenisation of documents and queries (bm25s' rules with an English stemmer)."""

    def __init__(self) -> None:
        self.stemmer = Stemmer.Stemmer("english")

    def documents(self, texts: list[str]) -> bm25s.tokenization.Tokenized:
        return bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer, show_progress=False)

    def query(self, text: str) -> list[str]:
        return bm25s.tokenize(
            [text], stopwords="en", stemmer=self.stemmer, return_ids=False, show_progress=False
        )[0]


class SpellingCorrector:
    """Corrects query words to catalog words; words it knows, numbers and short words pass."""

    def __init__(self, texts: Iterable[str], tokenizer: Tokenizer, min_length: int = 4, max_edits: int = 2):
        self.min_length = min_length
        self.max_edits = max_edits
        self.stemmer = tokenizer.stemmer
        counts = Counter(w for text in texts for w in WORD.findall(text.lower()) if not w.isdigit())
        self.symspell = SymSpell(max_dictionary_edit_distance=max_edits, prefix_length=7)
        for word, count in counts.items():
            if len(word) >= min_length:
                self.symspell.create_dictionary_entry(word, count)
        self.known = frozenset(counts)
        self.known_stems = frozenset(self.stemmer.stemWords(list(counts)))

    def correct(self, query: str) -> tuple[str, dict[str, str]]:
        """The query with unknown words replaced, and what was replaced by what."""
        changes: dict[str, str] = {}

        def fix(match: re.Match) -> str:
            word = match.group(0)
            lower = word.lower()
            if len(lower) < self.min_length or lower.isdigit() or lower in self.known:
                return word
            if self.stemmer.stemWord(lower) in self.known_stems:  # "lamps" for "lamp": stems meet
                return word
            # One slip in a short word, two in a longer one: "cheap" must not become "cream".
            edits = min(self.max_edits, 1 if len(lower) <= 5 else 2)
            found = self.symspell.lookup(lower, Verbosity.TOP, max_edit_distance=edits)
            if not found:
                return word
            changes[lower] = found[0].term
            return found[0].term

        return WORD.sub(fix, query), changes
