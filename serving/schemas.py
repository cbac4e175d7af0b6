"""Shared field types of the request models: bounded, printable identifiers."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, StringConstraints

# No control characters; ids land in logs, file names of nothing, and store keys.
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
HexId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Category = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _whole_number(value: object) -> object:
    # JSON Schema's "integer" is any number without a fraction, 5.0 included, so a client
    # checked against the published schema may send it; "5" and true stay refused (strict).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WholeNumber = Annotated[int, BeforeValidator(_whole_number)]


def bounded_whole_number(ge: int, le: int):
    """A WholeNumber within bounds, for use inside ``| None`` (bounds set on the field itself
    would land outside the integer schema and be published as unknown keywords)."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_whole_number)]
