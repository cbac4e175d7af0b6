"""A query → ranked products: both indexes, reciprocal rank fusion, a bounded personal re-rank,
filters. Every result says why it is there (its lexical and dense ranks, its personal score).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from cachetools import LRUCache

from data_contracts.schemas import in_category
from search.config import SearchConfig
from search.encoder import Encoder
from search.index import LoadedIndex
from search.text import Tokenizer

# item ids (the candidates) → the recommender's scores for them (NaN where it has none).
PersonalScorer = Callable[[Sequence[str]], np.ndarray]


class QueryError(ValueError):
    """A query that cannot be searched (empty, too long); the message says why."""


@dataclass(frozen=True)
class Filters:
    category: str | None = None  # this category or below it: "Home" matches "Home > Lamps"
    min_price: float | None = None
    max_price: float | None = None
    in_stock: bool | None = None  # True: only in stock; False: only out of stock; None: both

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.category, self.min_price, self.max_price, self.in_stock))


@dataclass
class Hit:
    item_id: str
    row: int
    score: float
    lexical_rank: int | None = None  # 1-based rank in the BM25 list, None if not in it
    dense_rank: int | None = None
    personal: float | None = None  # the candidate's percentile under the recommender


@dataclass
class SearchResult:
    hits: list[Hit]
    corrected_query: str | None = None  # the query as searched, when spelling was corrected
    personalised: bool = False
    corrections: dict[str, str] = field(default_factory=dict)


class SearchEngine:
    def __init__(self, index: LoadedIndex, encoder: Encoder, config: SearchConfig | None = None):
        self.index = index
        self.encoder = encoder
        self.config = config or SearchConfig()
        self.tokenizer = Tokenizer()
        self._query_vectors: LRUCache = LRUCache(max(1, self.config.query_cache))
        self._category_masks: LRUCache = LRUCache(256)
        # Delisted items are never returned; None when there are none (no mask to apply).
        self._listed = None if index.listed.all() else index.listed

    def clean_query(self, query: str) -> str:
        text = " ".join(query.split())
        if not text:
            raise QueryError("the query is empty")
        if len(text) > self.config.max_query_chars:
            raise QueryError(
                f"the query is {len(text)} characters long; at most {self.config.max_query_chars}"
            )
        return text

    def search(
        self,
        query: str,
        k: int = 10,
        filters: Filters | None = None,
        personal: PersonalScorer | None = None,
        lexical: bool = True,
        dense: bool = True,
    ) -> SearchResult:
        """The top ``k`` items for ``query``; ``lexical``/``dense`` switch an index off (evaluation)."""
        text = self.clean_query(query)
        k = max(1, min(k, self.config.max_k))
        filters = filters or Filters()
        allowed = self._allowed(filters)
        corrected, changes = self.index.speller.correct(text)
        depth = max(self.config.candidates, k)
        ranks: list[tuple[float, dict[int, int]]] = []
        lexical_ranks = self._lexical(corrected, depth, allowed) if lexical else {}
        # The vector side reads the corrected query too: MiniLM does not know "hedphones" either.
        dense_ranks = self._dense(corrected, depth, allowed) if dense else {}
        if lexical:
            ranks.append((self.config.lexical_weight, lexical_ranks))
        if dense:
            ranks.append((self.config.dense_weight, dense_ranks))
        fused: dict[int, float] = {}
        for weight, ranking in ranks:
            for row, rank in ranking.items():
                fused[row] = fused.get(row, 0.0) + weight / (self.config.rrf_k + rank)
        hits = [
            Hit(self.index.item_ids[row], row, score, lexical_ranks.get(row), dense_ranks.get(row))
            for row, score in fused.items()
        ]
        personalised = False
        if personal is not None and hits and self.config.personal_weight > 0:
            personalised = self._personalise(hits, personal)
        hits.sort(key=lambda h: (-h.score, h.row))
        return SearchResult(
            hits=hits[:k],
            corrected_query=corrected if changes else None,
            personalised=personalised,
            corrections=changes,
        )

    # --- the two indexes ----------------------------------------------------------------------

    def _lexical(self, query: str, depth: int, allowed: np.ndarray | None) -> dict[int, int]:
        tokens = self.tokenizer.query(query)
        if not tokens:
            return {}
        scores = self.index.bm25.get_scores(tokens)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        return _ranks(scores, depth, positive_only=True)

    def _dense(self, query: str, depth: int, allowed: np.ndarray | None) -> dict[int, int]:
        vector = self._query_vectors.get(query) if self.config.query_cache else None
        if vector is None:
            vector = self.encoder.encode_query(query)
            if self.config.query_cache:
                self._query_vectors[query] = vector
        n = len(self.index)
        if allowed is not None and allowed.sum() <= self.config.exact_filter_share * n:
            # A narrow filter: score its items exactly (the graph would need to be read too deep).
            rows = np.flatnonzero(allowed)
            scores = np.full(n, -np.inf, dtype=np.float32)
            scores[rows] = self.index.vectors[rows] @ vector
            return _ranks(scores, depth)
        wanted = depth if allowed is None else min(n, depth * 4)
        matches = self.index.graph.search(vector, wanted)
        rows = [int(key) for key in matches.keys if allowed is None or allowed[int(key)]]
        return {row: rank for rank, row in enumerate(rows[:depth], start=1)}

    # --- filters and the personal re-rank ----------------------------------------------------

    def _allowed(self, filters: Filters) -> np.ndarray | None:
        index = self.index
        if not filters.active:
            return self._listed
        allowed = index.listed.copy()
        if filters.category is not None:
            allowed &= self._category_mask(filters.category)
        if filters.in_stock is not None:
            allowed &= index.in_stock == filters.in_stock
        with np.errstate(invalid="ignore"):
            if filters.min_price is not None:
                allowed &= index.prices >= filters.min_price
            if filters.max_price is not None:
                allowed &= index.prices <= filters.max_price
        return allowed

    def _category_mask(self, category: str) -> np.ndarray:
        wanted = category.strip().lower()
        mask = self._category_masks.get(wanted)
        if mask is None:
            mask = np.array([in_category(c, wanted) for c in self.index.categories], dtype=bool)
            self._category_masks[wanted] = mask
        return mask

    def _personalise(self, hits: list[Hit], personal: PersonalScorer) -> bool:
        scores = np.asarray(personal([h.item_id for h in hits]), dtype=np.float64)
        known = ~np.isnan(scores)
        if known.sum() < 2:
            return False
        # Percentile among the candidates the recommender knows: 1 = its favourite of them;
        # equal scores share the lower percentile, so ties are not broken by chance.
        ranked = np.sort(scores[known])
        percentile = np.searchsorted(ranked, np.where(known, scores, 0.0), side="left") / (len(ranked) - 1)
        for hit, p, ok in zip(hits, percentile, known, strict=True):
            if ok:
                hit.personal = round(float(p), 4)
                hit.score *= 1.0 + self.config.personal_weight * float(p)
        return True


def _ranks(scores: np.ndarray, depth: int, positive_only: bool = False) -> dict[int, int]:
    """Row → 1-based rank of the ``depth`` best scores (ties by row)."""
    n = len(scores)
    if n == 0:
        return {}
    depth = min(depth, n)
    top = np.argpartition(-scores, depth - 1)[:depth]
    top = top[np.lexsort((top, -scores[top]))]
    if positive_only:
        top = top[scores[top] > 0]
    else:
        top = top[np.isfinite(scores[top])]
    return {int(row): rank for rank, row in enumerate(top, start=1)}
