"""Shared field types of the request models: bounded, printable identifiers."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

# No control characters; ids land in logs, file names of nothing, and store keys.
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]
HexId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Category = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
