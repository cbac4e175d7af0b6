"""Request and response models of the recommender service (they are its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from data_contracts.schemas import ITEM_EVENT_TYPES
from serving.schemas import Category, HexId, Identifier, WholeNumber, bounded_whole_number

MAX_K = 100
MAX_SESSION_ITEMS = 50

EventType = Literal[ITEM_EVENT_TYPES]  # type: ignore[valid-type]
FallbackReason = Literal[
    "no_model", "empty_sequence", "feature_store_down", "model_timeout", "model_error", "unknown_item"
]


class _Strict(BaseModel):
    # Unknown fields refused, and no coercion: "5" or true is not a k (subclasses' model_config
    # is merged with this one, so every request model here is strict).
    model_config = ConfigDict(extra="forbid", strict=True)


class RecommendRequest(_Strict):
    user_id: Identifier
    k: WholeNumber = Field(10, ge=1, le=MAX_K, description="how many items")
    session_item_ids: Annotated[list[Identifier], Field(max_length=MAX_SESSION_ITEMS)] = Field(
        default_factory=list, description="items of the current session not yet in the store, oldest first"
    )
    session_id: Identifier | None = None
    category: Category | None = Field(None, description='only this category or below it, e.g. "Home"')
    in_stock_only: bool = True
    exclude_seen: bool = Field(True, description="leave out items the user already interacted with")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"user_id": "u42", "k": 5, "session_item_ids": ["i17"], "category": "Home"}
        },
    )


class ScoredItem(BaseModel):
    item_id: str
    score: float
    title: str | None = None
    category: str | None = None


class RecommendResponse(BaseModel):
    rec_id: str = Field(description="send it back with a rec_click event and with feedback")
    user_id: str
    model_version: str = Field(description='the model tag, or "popularity"')
    baseline: str | None = Field(
        None,
        description='set when the promoted model is a baseline (e.g. "ease") that no trained '
        "model beat on validation; null when a trained model answered",
    )
    fallback: FallbackReason | None = Field(None, description="why the model's answer was not (fully) used")
    experiment: str | None = Field(None, description="the traffic split this answer belongs to, if one runs")
    variant: str | None = Field(
        None,
        description="the experiment's variant that answered (e.g. champion or challenger); null without one",
    )
    items: list[ScoredItem]


class EventRequest(_Strict):
    user_id: Identifier
    item_id: Identifier
    event_type: EventType
    session_id: Identifier | None = None
    quantity: bounded_whole_number(ge=1, le=10_000) | None = None
    price: float | None = Field(None, ge=0, le=1e9, allow_inf_nan=False)
    rec_id: HexId | None = Field(None, description="the /recommend answer this click came from")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"user_id": "u42", "item_id": "i17", "event_type": "rec_click", "rec_id": "0" * 32}
        },
    )


class EventResponse(BaseModel):
    event_id: str
    logged: bool = Field(description="written to the event log that the next ingest reads")
    stored_online: bool = Field(description="appended to the user's online sequence")
    sequence_length: int | None = None
    fallback: FallbackReason | None = None


class SimilarRequest(_Strict):
    item_id: Identifier
    k: WholeNumber = Field(10, ge=1, le=MAX_K)
    category: Category | None = None
    in_stock_only: bool = True

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"item_id": "i17", "k": 5}})


class SimilarResponse(BaseModel):
    item_id: str
    model_version: str
    fallback: FallbackReason | None = None
    items: list[ScoredItem]


# --- product search ------------------------------------------------------------------------

MAX_QUERY_CHARS = 256
# Something to search for (a character that is not a blank) and no control characters but
# blanks; said in the type, so the published schema refuses what the service refuses.
Query = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        pattern=r"^[^\x00-\x08\x0e-\x1b\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x08\x0e-\x1b\x7f]*$",
    ),
]


class SearchRequest(_Strict):
    query: Query = Field(description=f"what the shopper typed (1 to {MAX_QUERY_CHARS} characters)")
    k: WholeNumber = Field(10, ge=1, le=MAX_K, description="how many items")
    user_id: Identifier | None = Field(None, description="personalise by this shopper's sequence")
    session_id: Identifier | None = None
    session_item_ids: Annotated[list[Identifier], Field(max_length=MAX_SESSION_ITEMS)] = Field(
        default_factory=list, description="items of the current session not yet in the store, oldest first"
    )
    category: Category | None = Field(None, description='only this category or below it, e.g. "Home"')
    min_price: float | None = Field(None, ge=0, le=1e9, allow_inf_nan=False)
    max_price: float | None = Field(
        None, ge=0, le=1e9, allow_inf_nan=False, description="a max_price below min_price matches nothing"
    )
    in_stock: bool | None = Field(None, description="true: only items in stock; false: only out of stock")

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"query": "wireless headphones", "k": 5, "user_id": "u42"}},
    )

    @field_validator("query")
    @classmethod
    def _one_blank_between_words(cls, value: str) -> str:
        return " ".join(value.split())


class SearchWhy(BaseModel):
    lexical_rank: int | None = Field(None, description="rank in the BM25 list, if it was in it")
    dense_rank: int | None = Field(None, description="rank in the MiniLM vector list, if it was in it")
    personal: float | None = Field(None, description="percentile under the recommender among the candidates")


class SearchItem(BaseModel):
    item_id: str
    title: str | None = None
    price: float | None = None
    category: str | None = None
    brand: str | None = None
    in_stock: bool
    score: float
    why: SearchWhy


class SearchResponse(BaseModel):
    search_id: str = Field(description="send it back as rec_id with a rec_click on a result")
    query: str
    corrected_query: str | None = Field(
        None, description="the query as searched, when spelling was corrected"
    )
    index_ready: bool = Field(description="false until the search index has been built: items is then empty")
    index_version: int | None = None
    personalised: bool = False
    fallback: Literal["no_index", "search_timeout", "feature_store_down"] | None = None
    items: list[SearchItem]
