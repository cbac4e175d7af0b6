"""The mapping engine: a source's text frame → canonical raw events and catalog rows.

One set of Polars expressions serves every source. Values that do not parse are left null
and their row carries a ``reject_reason`` naming the source columns, so the contract rules
quarantine the row with its reason instead of losing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from data_contracts import schemas
from data_contracts.adapters.reading import LandingFileError, stable_ids
from data_contracts.adapters.spec import LINEAGE_COLUMNS, Catalog, Events, Source, Timestamp


@dataclass
class AdaptedFile:
    """What one landed file contributes: canonical raw events and catalog rows."""

    format: str  # the name of the source that read it
    events: pl.DataFrame  # schemas.RAW_EVENT_SCHEMA
    catalog: pl.DataFrame  # schemas.RAW_CATALOG_SCHEMA


# ---------------------------------------------------------------------------- parsing

_TS_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S UTC",
    "%Y-%m-%d",
)
_UNIT_MICROSECONDS = {"s": 1_000_000, "ms": 1_000, "us": 1}


def parse_ts(column: str, zone: str = "UTC", formats: tuple[str, ...] = ()) -> pl.Expr:
    """Text → UTC datetime; text without an offset is read as local time in ``zone``.

    Unparseable text becomes null (the caller flags it).
    """
    # chrono's %z wants "+00:00"; ISO 8601 also allows "Z".
    text = pl.col(column).cast(pl.String).str.strip_chars().str.replace(r"Z$", "+00:00")
    candidates = []
    for fmt in formats or _TS_FORMATS:
        if "%z" in fmt or "%Z" in fmt:
            candidates.append(text.str.strptime(pl.Datetime("us", "UTC"), fmt, strict=False))
        else:
            naive = text.str.strptime(pl.Datetime("us"), fmt, strict=False)
            candidates.append(_localize(naive, zone))
    return pl.coalesce(candidates)


def _localize(naive: pl.Expr, zone: str) -> pl.Expr:
    if zone == "UTC":
        return naive.dt.replace_time_zone("UTC")
    # At the autumn clock change the earlier of the two instants is taken.
    return naive.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null").dt.convert_time_zone(
        "UTC"
    )


def _ts_expr(frame: pl.DataFrame, column: str, spec: Timestamp) -> pl.Expr:
    dtype = frame.schema[column]
    col = pl.col(column)
    if spec.unit is not None:
        number = col.str.strip_chars().cast(pl.Float64, strict=False) if dtype == pl.String else col
        micros = (
            (number.cast(pl.Float64) * _UNIT_MICROSECONDS[spec.unit]).round().cast(pl.Int64, strict=False)
        )
        return micros.cast(pl.Datetime("us", "UTC"), strict=False)
    if isinstance(dtype, pl.Datetime):
        return _localize(col, spec.zone) if dtype.time_zone is None else col.dt.convert_time_zone("UTC")
    if isinstance(dtype, pl.Date):
        return _localize(col.cast(pl.Datetime("us")), spec.zone)
    return parse_ts(column, spec.zone, spec.format)


def _num_expr(frame: pl.DataFrame, column: str, dtype: pl.DataType) -> pl.Expr:
    if frame.schema[column] == pl.String:
        return pl.col(column).str.strip_chars().cast(dtype, strict=False)
    return pl.col(column).cast(dtype, strict=False)


def _failed(frame: pl.DataFrame, column: str, parsed: pl.Expr) -> pl.Expr:
    """True where the source had a value but parsing it gave null."""
    if frame.schema[column] != pl.String:
        return pl.col(column).is_not_null() & parsed.is_null()
    original = pl.col(column).str.strip_chars()
    return original.is_not_null() & (original != "") & parsed.is_null()


def _unparseable(checks: dict[str, pl.Expr]) -> pl.Expr:
    """'unparseable: col,...' for the source columns that failed to parse, else null."""
    if not checks:
        return pl.lit(None, pl.String)
    failed = pl.concat_str(
        [pl.when(expr).then(pl.lit(name)) for name, expr in checks.items()],
        separator=",",
        ignore_nulls=True,
    )
    return pl.when(failed != "").then(pl.lit("unparseable: ") + failed)


def _text(frame: pl.DataFrame, column: str, cast: str = "text") -> pl.Expr:
    """A text field: trimmed, blanks as null; ``integer``: 17850.0 → "17850"."""
    dtype = frame.schema[column]
    if cast == "integer":
        number = _num_expr(frame, column, pl.Float64)
        return number.cast(pl.Int64, strict=False).cast(pl.String)
    if dtype.is_integer():
        return pl.col(column).cast(pl.String)
    text = pl.col(column).cast(pl.String).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


def _with_lineage(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    return frame.with_columns(pl.lit(str(path)).alias("source_file"))


# ---------------------------------------------------------------------------- columns


def check_columns(path: Path, source: Source, columns: list[str]) -> None:
    """The file-level check: the source's columns are there, and no others where it refuses them."""
    if not source.read.header:
        return
    names = [c for c in columns if c not in LINEAGE_COLUMNS]
    missing = [c for c in source.read.columns if c not in names]
    if missing:
        raise LandingFileError(f"{path}: missing required columns {missing} (source {source.name})")
    if source.read.extra_columns == "refuse":
        extra = sorted(set(names) - set(source.read.known_columns))
        if extra:
            raise LandingFileError(
                f"{path}: unexpected columns {extra}; the {source.name} columns are"
                f" {list(source.read.known_columns)}"
            )


def adapt(path: Path, source: Source, frame: pl.DataFrame) -> AdaptedFile:
    """Map one file's frame (from ``reading.read_table``) with ``source``."""
    check_columns(path, source, frame.columns)
    for column in source.read.known_columns:
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(column))
    if source.events is None:
        return AdaptedFile(
            source.name, schemas.empty(schemas.RAW_EVENT_SCHEMA), catalog_file(path, source, frame)
        )
    events = map_events(path, source.events, frame)
    catalog = (
        items_of(path, source.catalog, frame, events)
        if source.catalog is not None
        else schemas.empty(schemas.RAW_CATALOG_SCHEMA)
    )
    return AdaptedFile(source.name, events, catalog)


# ---------------------------------------------------------------------------- events


def map_events(path: Path, spec: Events, frame: pl.DataFrame) -> pl.DataFrame:
    exprs: dict[str, pl.Expr] = {}
    checks: dict[str, pl.Expr] = {}
    fields = spec.fields
    if "ts" in fields:
        column = fields["ts"].column
        exprs["ts"] = _ts_expr(frame, column, spec.timestamp)
        checks[column] = _failed(frame, column, exprs["ts"])
    elif spec.timestamp.from_row_number is not None:
        start = pl.lit(spec.timestamp.from_row_number).cast(pl.Datetime("us", "UTC"))
        exprs["ts"] = start + pl.duration(seconds=pl.col("source_row"))
    for name, dtype in (("quantity", pl.Int64), ("price", pl.Float64)):
        if name in fields:
            column = fields[name].column
            exprs[name] = _num_expr(frame, column, dtype)
            checks[column] = _failed(frame, column, exprs[name])
    for name in ("event_id", "user_id", "item_id", "session_id", "source", "rec_id"):
        if name in fields:
            exprs[name] = _text(frame, fields[name].column, fields[name].cast)
    if spec.event_id.column:
        exprs["event_id"] = _text(frame, spec.event_id.column)
    if "event_type" in fields:
        exprs["event_type"] = _event_type(fields["event_type"].column, spec.event_types)
    for name, value in spec.constants.items():
        constant = pl.lit(value).cast(schemas.EVENT_SCHEMA[name])
        exprs[name] = pl.coalesce(exprs[name], constant) if name in exprs else constant
    reasons = [pl.col("reject_reason")]
    if spec.cancellation is not None:
        cancel = pl.col(spec.cancellation.column).cast(pl.String).str.strip_chars()
        is_cancel = cancel.str.starts_with(spec.cancellation.prefix)
        exprs["event_type"] = (
            pl.when(is_cancel).then(pl.lit(spec.cancellation.event_type)).otherwise(exprs["event_type"])
        )
        if "quantity" in exprs:
            # A cancellation's quantity is negative in the source; a refund counts items back.
            exprs["quantity"] = pl.when(is_cancel).then(exprs["quantity"].abs()).otherwise(exprs["quantity"])
    if spec.item_codes is not None:
        code = exprs["item_id"]
        reasons.append(
            pl.when(code.is_not_null() & ~code.str.contains(spec.item_codes.pattern)).then(
                pl.lit(f"not_an_item: {spec.item_codes.reason} ") + code
            )
        )
    reasons.append(_unparseable(checks))
    # Only what the source maps: a column it does not map never passes as a canonical field.
    out = frame.select(
        *[expr.alias(name) for name, expr in exprs.items()],
        "source_row",
        "raw_line",
        pl.coalesce(reasons).alias("reject_reason"),
    )
    out = _with_event_ids(path, spec, frame, out)
    return schemas.conform(_with_lineage(out, path), schemas.RAW_EVENT_SCHEMA)


def _event_type(column: str, vocabulary: dict[str, str | None]) -> pl.Expr:
    """The canonical event type; a value the vocabulary leaves unmapped keeps its own text."""
    raw = pl.col(column).cast(pl.String).str.strip_chars()
    lowered = raw.str.to_lowercase()
    if not vocabulary:
        return lowered
    mapped = {k: v for k, v in vocabulary.items() if v is not None}
    # Values mapped to null, and values not listed that are no canonical name, keep their
    # source text, so the unknown_event_type rule quarantines them with what the file said.
    quarantined = [k for k, v in vocabulary.items() if v is None]
    return (
        pl.when(lowered.is_in(quarantined))
        .then(raw)
        .otherwise(lowered.replace_strict(mapped, default=raw, return_dtype=pl.String))
    )


def _with_event_ids(path: Path, spec: Events, frame: pl.DataFrame, out: pl.DataFrame) -> pl.DataFrame:
    ids = spec.event_id
    if ids.from_row_number:
        return out.with_columns(
            (pl.lit(f"{ids.prefix}{path.name}-") + pl.col("source_row").cast(pl.String)).alias("event_id")
        )
    if ids.hash_columns:
        hashed = stable_ids(frame, list(ids.hash_columns), ids.prefix)
    else:
        if "event_id" in out.columns and not out["event_id"].null_count():
            return out
        for column in schemas.EVENT_COLUMNS:
            if column not in out.columns:
                out = out.with_columns(pl.lit(None, schemas.EVENT_SCHEMA[column]).alias(column))
        hashed = stable_ids(out, [c for c in schemas.EVENT_COLUMNS if c != "event_id"], ids.prefix)
    if "event_id" in out.columns:
        return out.with_columns(pl.coalesce(pl.col("event_id"), hashed).alias("event_id"))
    return out.with_columns(hashed.alias("event_id"))


# ---------------------------------------------------------------------------- catalog


def _category(frame: pl.DataFrame, spec: Catalog) -> pl.Expr | None:
    if "category" not in spec.fields:
        return None
    category = _text(frame, spec.fields["category"].column)
    if spec.category_separator:
        category = category.str.replace_all(spec.category_separator, " > ", literal=True)
    return category


def items_of(path: Path, spec: Catalog, frame: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """The items an events file describes: one row per distinct version, first seen first."""
    exprs: dict[str, pl.Expr] = {}
    for name, field in spec.fields.items():
        if name in ("title", "description", "brand", "currency", "item_id"):
            exprs[name] = _text(frame, field.column, field.cast)
    if (category := _category(frame, spec)) is not None:
        exprs["category"] = category
    if "price" in spec.fields:
        exprs["price"] = _num_expr(frame, spec.fields["price"].column, pl.Float64)
    keep = events.select(
        pl.col("item_id"), pl.col("price"), pl.col("ts").alias("updated_at"), "event_type", "reject_reason"
    )
    base = frame.select(*[e.alias(n) for n, e in exprs.items()], "source_row")
    rows = pl.concat([keep.drop([c for c in keep.columns if c in base.columns]), base], how="horizontal")
    if spec.title is not None:
        parts = []
        for part in spec.title.join:
            if part == "category_leaf":
                parts.append(pl.col("category").str.split(" > ").list.last())
            else:
                parts.append(_text(frame, part))
        # The last part names the item; where it is missing, "item <id>" stands in for it.
        parts[-1] = parts[-1].fill_null(pl.lit("item ") + pl.col("item_id"))
        joined = pl.concat_str(parts, separator=" ", ignore_nulls=True).str.strip_chars()
        rows = rows.with_columns(pl.when(joined != "").then(joined).alias("title"))
    if "title" not in rows.columns or spec.title is not None:
        fallback = pl.lit("item ") + pl.col("item_id")
        title = pl.coalesce(pl.col("title"), fallback) if "title" in rows.columns else fallback
        rows = rows.with_columns(title.alias("title"))
    for name, value in spec.constants.items():
        constant = pl.lit(value).cast(schemas.CATALOG_SCHEMA[name])
        rows = rows.with_columns(
            (pl.coalesce(pl.col(name), constant) if name in rows.columns else constant).alias(name)
        )
    if "in_stock" not in rows.columns:
        rows = rows.with_columns(pl.lit(True).alias("in_stock"))
    described = (
        pl.col("item_id").is_not_null()
        & pl.col("reject_reason").is_null()
        & pl.col("title").is_not_null()
        & (pl.col("event_type") != "refund")
    )
    if spec.positive_price_only:
        described &= pl.col("price") > 0
    versions = [c for c in schemas.CATALOG_COLUMNS if c != "updated_at" and c in rows.columns]
    catalog = rows.filter(described).unique(subset=versions, keep="first", maintain_order=True)
    return schemas.conform(_with_lineage(catalog, path), schemas.RAW_CATALOG_SCHEMA)


def catalog_file(path: Path, source: Source, frame: pl.DataFrame) -> pl.DataFrame:
    """A catalog snapshot: one row per line, values parsed, blanks as nulls."""
    spec = source.catalog
    assert spec is not None
    exprs: dict[str, pl.Expr] = {}
    checks: dict[str, pl.Expr] = {}
    for name, field in spec.fields.items():
        column = field.column
        if name == "updated_at":
            exprs[name] = _ts_expr(frame, column, Timestamp())
            checks[column] = _failed(frame, column, exprs[name])
        elif name == "price":
            exprs[name] = _num_expr(frame, column, pl.Float64)
            checks[column] = _failed(frame, column, exprs[name])
        elif name == "in_stock":
            flag = pl.col(column).cast(pl.String).str.strip_chars().str.to_lowercase()
            exprs[name] = (
                pl.when(flag.is_in(["true", "1", "yes", "t"]))
                .then(True)
                .when(flag.is_in(["false", "0", "no", "f"]))
                .then(False)
            )
        else:
            exprs[name] = _text(frame, column, field.cast)
    if (category := _category(frame, spec)) is not None:
        exprs["category"] = category
    for name, value in spec.constants.items():
        constant = pl.lit(value).cast(schemas.CATALOG_SCHEMA[name])
        exprs[name] = pl.coalesce(exprs[name], constant) if name in exprs else constant
    out = frame.with_columns(
        *[e.alias(n) for n, e in exprs.items()],
        pl.coalesce(pl.col("reject_reason"), _unparseable(checks)).alias("reject_reason"),
    )
    return schemas.conform(_with_lineage(out, path), schemas.RAW_CATALOG_SCHEMA)
