"""Source files: how one kind of export maps to the canonical event and catalog.

A source is a small YAML file, validated here; an error names the file, the key and the
problem. The shipped sources are in ``shipped/``; a shop's own live in the landing folder's
``sources/`` and may not reuse a shipped name.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from data_contracts import schemas

# Columns every reader adds; a source never names them.
LINEAGE_COLUMNS = ("source_row", "raw_line", "reject_reason")
SUFFIXES = {
    "csv": (".csv",),
    "tsv": (".tsv",),
    "parquet": (".parquet",),
    "jsonl": (".jsonl", ".ndjson"),
    "whitespace": (".txt",),
}


class SourceError(ValueError):
    """A source file that cannot be used; the message names the file, the key and the problem."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Read(_Model):
    """How to read the file."""

    # csv, tsv, parquet, jsonl or whitespace-separated fields (no quoting); default: any but
    # whitespace, by the file's suffix.
    format: Literal["csv", "tsv", "parquet", "jsonl", "whitespace"] | None = None
    # True: the first line names the columns; False: `columns` gives their order.
    header: bool = True
    # header: the columns a file must have; no header: every column, in order.
    columns: tuple[str, ...]
    # Columns a file may have besides `columns` (header files only).
    optional_columns: tuple[str, ...] = ()
    # Whether a header may name columns this source does not list.
    extra_columns: Literal["allow", "refuse"] = "allow"
    # Default: "," for .csv, a tab for .tsv.
    delimiter: str | None = None
    quote: str = '"'
    encoding: Literal["utf-8", "latin-1", "utf-16"] = "utf-8"
    # A header-less file is recognised by its first line matching this pattern; without
    # one it is read with this source only when landed with `--source`.
    first_line: str | None = None
    # whitespace files: a line that does not match is quarantined.
    line_pattern: str | None = None

    @field_validator("delimiter", "quote")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError("must be a single character")
        return value

    @field_validator("first_line", "line_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from exc
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Read:
        if not self.columns:
            raise ValueError("columns: list at least one column")
        if len(set(self.columns)) != len(self.columns):
            raise ValueError("columns: a column is listed twice")
        if self.format == "whitespace" and self.header:
            raise ValueError("header: whitespace files have no header; set header: false")
        if self.format in (None, "parquet", "jsonl") and not self.header:
            if self.format is None:
                raise ValueError("format: a header-less file is csv, tsv or whitespace; say which")
            raise ValueError(f"header: {self.format} files name their columns; header: false is for text")
        if self.first_line and self.header:
            raise ValueError("first_line: only header-less files are recognised by their first line")
        return self

    @property
    def suffixes(self) -> tuple[str, ...]:
        if self.format is None:
            return tuple(s for f, group in SUFFIXES.items() if f != "whitespace" for s in group)
        return SUFFIXES[self.format]

    def format_of(self, path: Path) -> str:
        """The reader for ``path``: the declared format, else the one its suffix names."""
        if self.format is not None:
            return self.format
        suffix = Path(path).suffix.lower()
        return next(f for f, group in SUFFIXES.items() if suffix in group)

    def delimiter_of(self, path: Path) -> str:
        if self.delimiter is not None:
            return self.delimiter
        return "\t" if self.format_of(path) == "tsv" else ","

    @property
    def known_columns(self) -> tuple[str, ...]:
        return (*self.columns, *self.optional_columns)


class Column(_Model):
    """A canonical field read from a source column."""

    column: str
    # integer: numbers written as 17850.0 become "17850" (ids stored as floats).
    cast: Literal["text", "integer"] = "text"


def _field(value: object) -> object:
    return {"column": value} if isinstance(value, str) else value


class Timestamp(_Model):
    """How the timestamp column is written."""

    # strftime patterns tried in order; default: the ISO 8601 forms.
    format: tuple[str, ...] = ()
    # Numbers since 1970-01-01 UTC in this unit instead of text.
    unit: Literal["s", "ms", "us"] | None = None
    # Zone of times written without an offset.
    zone: str = "UTC"
    # Files with order but no time: each row gets this time plus its row number in seconds.
    from_row_number: datetime | None = None

    @field_validator("format", mode="before")
    @classmethod
    def _list(cls, value):
        return (value,) if isinstance(value, str) else value

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/London)") from exc
        return value

    @field_validator("from_row_number")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value

    @model_validator(mode="after")
    def _one_way(self) -> Timestamp:
        if self.unit and self.format:
            raise ValueError("give either unit (numbers) or format (text), not both")
        return self


class EventId(_Model):
    """Where event ids come from: a column, else a content hash, or the row number."""

    column: str | None = None
    # Hash of these source columns (default: every canonical field, after mapping).
    hash_columns: tuple[str, ...] = ()
    prefix: str = "ev-"
    # ids are prefix + file name + row number (files whose rows have no content of their own).
    from_row_number: bool = False


class Cancellation(_Model):
    """Rows whose `column` starts with `prefix` are cancellations: `event_type`, quantity made positive."""

    column: str
    prefix: str
    event_type: Literal[schemas.EVENT_TYPES] = "refund"  # type: ignore[valid-type]


class ItemCodes(_Model):
    """Item codes that do not match `pattern` are not items (fees, notes): quarantined as not_an_item."""

    pattern: str
    reason: str = "fee or note code"

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression ({exc})") from exc
        return value


class Events(_Model):
    """Which column becomes which canonical event field, and the rules to derive the rest."""

    fields: dict[str, Column] = Field(default_factory=dict)
    # A value for every row, or for the rows where the mapped column is blank.
    constants: dict[str, str | int | float] = Field(default_factory=dict)
    # source value → canonical event type, or null to quarantine it (unknown_event_type).
    # Values not listed must already be canonical names, else they are quarantined too.
    event_types: dict[str, str | None] = Field(default_factory=dict)
    timestamp: Timestamp = Timestamp()
    event_id: EventId = EventId()
    cancellation: Cancellation | None = None
    item_codes: ItemCodes | None = None

    @field_validator("fields", mode="before")
    @classmethod
    def _fields(cls, value):
        return {k: _field(v) for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("fields")
    @classmethod
    def _canonical_fields(cls, value: dict[str, Column]) -> dict[str, Column]:
        unknown = sorted(set(value) - set(schemas.EVENT_COLUMNS))
        if unknown:
            raise ValueError(f"{unknown} are not canonical event fields ({', '.join(schemas.EVENT_COLUMNS)})")
        return value

    @field_validator("constants")
    @classmethod
    def _canonical_constants(cls, value: dict) -> dict:
        unknown = sorted(set(value) - set(schemas.EVENT_COLUMNS))
        if unknown:
            raise ValueError(f"{unknown} are not canonical event fields ({', '.join(schemas.EVENT_COLUMNS)})")
        if "event_type" in value and value["event_type"] not in schemas.EVENT_TYPES:
            raise ValueError(
                f"event_type {value['event_type']!r} is not one of {', '.join(schemas.EVENT_TYPES)}"
            )
        return value

    @field_validator("event_types")
    @classmethod
    def _vocabulary(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        for raw, canonical in value.items():
            if canonical is not None and canonical not in schemas.EVENT_TYPES:
                raise ValueError(
                    f"{raw}: {canonical!r} is not a canonical event type ({', '.join(schemas.EVENT_TYPES)});"
                    " map it to one of them, or to null to quarantine those rows"
                )
        return {str(k).strip().lower(): v for k, v in value.items()}

    @model_validator(mode="after")
    def _complete(self) -> Events:
        given = set(self.fields) | set(self.constants)
        if self.timestamp.from_row_number is not None:
            given.add("ts")
        if self.event_id.from_row_number or self.event_id.column:
            given.add("event_id")
        missing = [f for f in ("ts", "user_id", "item_id", "event_type") if f not in given]
        if missing:
            raise ValueError(f"fields: no column or constant for {missing}")
        if self.event_types and "event_type" not in self.fields:
            raise ValueError("event_types: a vocabulary needs fields.event_type (the column it maps)")
        return self


class Title(_Model):
    """A title made of several columns joined by a space ("category_leaf": the last category level).

    The last part names the item: where it is missing, "item <item_id>" stands in for it.
    """

    join: tuple[str, ...]


class Catalog(_Model):
    """Which catalog columns the file carries (events files: the items their rows mention)."""

    # catalog field → source column; an events file's item_id, price and updated_at default to
    # the event's item, price and time.
    fields: dict[str, Column] = Field(default_factory=dict)
    title: Title | None = None
    # Levels of `fields.category` are separated by this in the source (joined by " > " here).
    category_separator: str | None = None
    constants: dict[str, str | int | float | bool] = Field(default_factory=dict)
    # events files: only rows with a price above zero describe an item.
    positive_price_only: bool = False

    @field_validator("fields", mode="before")
    @classmethod
    def _fields(cls, value):
        return {k: _field(v) for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("fields", "constants")
    @classmethod
    def _canonical(cls, value: dict) -> dict:
        unknown = sorted(set(value) - set(schemas.CATALOG_COLUMNS))
        if unknown:
            raise ValueError(f"{unknown} are not catalog fields ({', '.join(schemas.CATALOG_COLUMNS)})")
        return value


class Source(_Model):
    """One kind of export: how to read it and how it maps to the contracts."""

    name: str
    description: str = ""
    read: Read
    events: Events | None = None
    catalog: Catalog | None = None
    path: Path | None = Field(default=None, exclude=True)  # the file it was loaded from
    shipped: bool = Field(default=False, exclude=True)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
            raise ValueError("use lower-case letters, digits and _ (e.g. my_shop_clicks)")
        return value

    @model_validator(mode="after")
    def _columns_exist(self) -> Source:
        if self.events is None and self.catalog is None:
            raise ValueError("a source needs an events section, a catalog section, or both")
        known = set(self.read.known_columns)
        named: list[tuple[str, str]] = []
        if self.events:
            named += [(f"events.fields.{k}", f.column) for k, f in self.events.fields.items()]
            named += [("events.event_id.column", c) for c in [self.events.event_id.column] if c]
            named += [("events.event_id.hash_columns", c) for c in self.events.event_id.hash_columns]
            if self.events.cancellation:
                named.append(("events.cancellation.column", self.events.cancellation.column))
        if self.catalog:
            named += [(f"catalog.fields.{k}", f.column) for k, f in self.catalog.fields.items()]
            if self.catalog.title:
                named += [("catalog.title.join", c) for c in self.catalog.title.join if c != "category_leaf"]
        for key, column in named:
            if column not in known:
                raise ValueError(f"{key}: column {column!r} is not in read.columns {list(self.read.columns)}")
        return self

    @property
    def kind(self) -> str:
        return "events" if self.events else "catalog"

    @property
    def carries_items(self) -> bool:
        """Whether its events files also describe the items they mention."""
        return self.events is not None and self.catalog is not None


def load_source(path: Path, shipped: bool = False) -> Source:
    """Read and validate one source file; a problem raises SourceError naming file and key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SourceError(f"{path}: not valid YAML{where} ({getattr(exc, 'problem', exc)})") from exc
    if not isinstance(data, dict):
        raise SourceError(f"{path}: a source file is a mapping (name:, read:, events:, catalog:)")
    try:
        return Source.model_validate({**data, "path": path, "shipped": shipped})
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        # A check across keys names its key in the message.
        raise SourceError(f"{path}: {key + ': ' if key else ''}{message}{more}") from exc
