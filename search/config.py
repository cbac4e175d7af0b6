"""Search settings: fusion weights, candidate depth, the personal blend, query limits."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SearchConfig:
    """How a query becomes a ranked list. Defaults in one place; ``from_env`` overrides them."""

    # Reciprocal rank fusion: an item at rank r of a list adds weight / (rrf_k + r).
    lexical_weight: float = 1.0
    dense_weight: float = 1.0
    rrf_k: int = 60
    # How deep each index is read before fusion.
    candidates: int = 100
    # Personal re-rank: a candidate's fused score is multiplied by (1 + personal_weight * p),
    # p in [0, 1] its percentile under the recommender among the candidates. Bounded: an item
    # can only pass one whose fused score is within a factor (1 + personal_weight) of its own,
    # so a query for "tent" never turns into the shopper's favourite shoes.
    personal_weight: float = 0.3
    # Query limits (characters after trimming) and result limits.
    max_query_chars: int = 256
    max_k: int = 100
    # Query tokens at least this long and unknown to the catalog are corrected to the nearest
    # catalog word within this edit distance ("hedphones" → "headphones").
    spell_min_length: int = 4
    spell_max_edits: int = 2
    # Filtered dense search: below this share of the catalog, the filtered items are scored
    # exactly; above it, the vector index is read deeper and the filter applied after.
    exact_filter_share: float = 0.25
    # Query vectors kept (identical queries are common: the head of the query distribution).
    query_cache: int = 10_000

    @classmethod
    def from_env(cls) -> SearchConfig:
        """``SHOPML_SEARCH_LEXICAL_WEIGHT`` etc. override the defaults."""
        overrides = {}
        for name, default in cls().__dict__.items():
            value = os.environ.get(f"SHOPML_SEARCH_{name.upper()}")
            if value is not None:
                overrides[name] = type(default)(value)
        return replace(cls(), **overrides)
