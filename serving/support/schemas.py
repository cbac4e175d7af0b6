"""Request and response models of the support service (they are its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from serving.schemas import HexId, Identifier
from training.support.runtime import MAX_MESSAGE_CHARS

MAX_REASON_CHARS = 500

# Something to read, and no control characters but tab and line breaks (a NUL would be
# stored with the dialogue and passed to the models).
Message = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=MAX_MESSAGE_CHARS,
        pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$",
    ),
]
Reason = Annotated[str, StringConstraints(max_length=MAX_REASON_CHARS)]
ChatFallback = Literal["timeout", "model_error", "unavailable"]


SessionToken = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


class ChatRequest(BaseModel):
    session_id: Identifier | None = Field(
        None, description="omit to start a session; the answer names it and gives its session_token"
    )
    session_token: SessionToken | None = Field(
        None, description="the token /chat returned when the session started; required to continue it"
    )
    message: Message
    user_id: Identifier | None = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"message": "How do I cancel order 12345678?"}},
    )


class Source(BaseModel):
    doc_id: str
    kind: str
    intent: str | None = None
    score: float


class CandidateScore(BaseModel):
    source: str = Field(description='"generated" or the doc_id of a retrieved answer')
    score: float
    text: str


class ProductCard(BaseModel):
    """A product the reply shows or talks about, from the catalog (a site renders it as a card)."""

    item_id: str
    title: str
    price: float | None = None
    currency: str | None = None
    in_stock: bool
    brand: str | None = None
    category: str | None = None


ChatGoal = Literal[
    "support",
    "product_request",
    "product_question",
    "small_talk",
    "out_of_scope",
    "other_language",
    "clarify",
]


class ChatResponse(BaseModel):
    session_id: str = Field(description="send it with session_token to continue this conversation")
    session_token: str | None = Field(
        None, description="given once, when the session starts: keep it, it proves the session is yours"
    )
    reply: str
    reply_id: str = Field(description="send it back with /feedback")
    handover: bool = Field(description="the conversation goes to a human agent")
    missing_slots: list[str] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    candidates: list[CandidateScore] = Field(default_factory=list)
    model_version: str
    fallback: ChatFallback | None = Field(None, description="why the model's reply was not used")
    experiment: str | None = Field(None, description="the traffic split this reply belongs to, if one runs")
    variant: str | None = Field(
        None,
        description="the experiment's variant that replied (e.g. champion or challenger); null without one",
    )
    language: str | None = Field(
        None, description="ISO 639-1 code of the message's language; null when too short to tell"
    )
    goal: ChatGoal | None = Field(
        None,
        description="what the turn was taken for: the router's goal, other_language (handed over), "
        "clarify (a clarifying question: the router was not sure); null for a fallback",
    )
    router_confidence: float | None = Field(None, description="the router's probability of its goal")
    products: list[ProductCard] = Field(
        default_factory=list, description="products the reply shows or answers about, facts from the catalog"
    )
    timings_ms: dict[str, float] = Field(default_factory=dict)


class FeedbackRequest(BaseModel):
    target_id: HexId = Field(description="a reply_id from /chat or a rec_id from /recommend")
    target_kind: Literal["reply", "recommendation"] = "reply"
    rating: Literal[1, -1]
    reason: Reason | None = None
    user_id: Identifier | None = None
    session_id: Identifier | None = None

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "example": {"target_id": "0" * 32, "rating": -1, "reason": "did not answer my question"}
        },
    )

    @field_validator("rating", mode="before")
    @classmethod
    def _not_a_boolean(cls, value):
        # true == 1.0 == 1 in Python: a Literal[1, -1] takes them even in strict mode.
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"rating must be the integer 1 or -1, not {value!r}")
        return value


class FeedbackResponse(BaseModel):
    feedback_id: str
    target_id: str
    target_kind: str
    rating: int
    logged: bool
