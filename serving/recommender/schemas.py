"""Request and response models of the recommender service (they are its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from data_contracts.schemas import ITEM_EVENT_TYPES
from serving.schemas import Category, HexId, Identifier

MAX_K = 100
MAX_SESSION_ITEMS = 50

EventType = Literal[ITEM_EVENT_TYPES]  # type: ignore[valid-type]
FallbackReason = Literal[
    "no_model", "empty_sequence", "feature_store_down", "model_timeout", "model_error", "unknown_item"
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(_Strict):
    user_id: Identifier
    k: int = Field(10, ge=1, le=MAX_K, description="how many items")
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
    fallback: FallbackReason | None = Field(None, description="why the model's answer was not (fully) used")
    items: list[ScoredItem]


class EventRequest(_Strict):
    user_id: Identifier
    item_id: Identifier
    event_type: EventType
    session_id: Identifier | None = None
    quantity: int | None = Field(None, ge=1, le=10_000)
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
    k: int = Field(10, ge=1, le=MAX_K)
    category: Category | None = None
    in_stock_only: bool = True

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"item_id": "i17", "k": 5}})


class SimilarResponse(BaseModel):
    item_id: str
    model_version: str
    fallback: FallbackReason | None = None
    items: list[ScoredItem]
