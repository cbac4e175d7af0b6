"""Adapters: read a landed file in any supported format and return canonical raw rows.

Every reader returns rows in the canonical raw schema (see ``schemas``): values it could not
parse are left null and the row carries a ``reject_reason``, so the contract rules can
quarantine it with its reason instead of losing it. A file that cannot be read as a whole
(empty, no known format, missing required columns) raises ``LandingFileError`` naming the
file and the problem.

Formats, recognised by their columns:
- canonical: CSV, Parquet or JSONL with the canonical event (or catalog) columns;
- online_retail: UCI Online Retail (II) invoice lines;
- rees46: the REES46 multi-category store clickstream;
- sasrec: ``user item`` lines, each user's lines in time order (no header).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache
from pathlib import Path

import duckdb
import polars as pl

from data_contracts import schemas

EVENT_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".ndjson", ".txt")

ONLINE_RETAIL_COLUMNS = {
    "Invoice",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "Price",
    "Customer ID",
    "Country",
}
REES46_COLUMNS = {
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
}
REES46_EVENT_TYPES = {"view": "view", "cart": "add_to_cart", "purchase": "purchase"}
# Online Retail stock codes of products: five digits, optionally followed by letters.
# Everything else (POST, DOT, M, BANK CHARGES, AMAZONFEE, TEST001, ...) is a fee or a note.
ONLINE_RETAIL_PRODUCT_CODE = r"^\d{5}[A-Za-z]*$"
# SASRec files carry order but no time: each line gets this base time plus its line number
# in seconds, which keeps every user's order and makes re-ingesting the file idempotent.
SASREC_BASE_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)


class LandingFileError(ValueError):
    """A landed file that cannot be ingested as a whole; the message names file and problem."""


@dataclass
class AdaptedFile:
    """What one landed file contributes: canonical raw events and catalog rows."""

    format: str
    events: pl.DataFrame  # schemas.RAW_EVENT_SCHEMA
    catalog: pl.DataFrame  # schemas.RAW_CATALOG_SCHEMA


# ---------------------------------------------------------------------------- reading


def read_table(path: Path) -> pl.DataFrame:
    """Read a CSV/TSV/Parquet/JSONL file as a frame with ``source_row`` and reject columns.

    Lines that do not parse (too few or too many fields, invalid UTF-8, broken JSON) become
    rows whose only values are ``raw_line`` and ``reject_reason``.
    """
    path = Path(path)
    if not path.exists():
        raise LandingFileError(f"{path}: file does not exist")
    if path.stat().st_size == 0:
        raise LandingFileError(f"{path}: file is empty (no header, no rows)")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # polars raises several types for a broken file
            raise LandingFileError(f"{path}: not a readable Parquet file ({exc})") from exc
        return frame.with_row_index("source_row", offset=1).with_columns(
            pl.col("source_row").cast(pl.Int64),
            pl.lit(None, pl.String).alias("raw_line"),
            pl.lit(None, pl.String).alias("reject_reason"),
        )
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    if suffix in (".csv", ".tsv"):
        return _read_csv(path, "\t" if suffix == ".tsv" else ",")
    raise LandingFileError(f"{path}: unsupported file type {suffix!r}; use one of {EVENT_SUFFIXES}")


def _read_csv(path: Path, delimiter: str) -> pl.DataFrame:
    """Read every field as text with DuckDB, which reports each rejected line with its reason."""
    con = _scratch_database().cursor()
    # Reads may run in parallel threads; each names its own rejects tables.
    tag = uuid.uuid4().hex[:12]
    try:
        rel = con.sql(
            "SELECT * FROM read_csv(?, header=true, all_varchar=true, delim=?, quote='\"',"
            " store_rejects=true, rejects_scan=?, rejects_table=?)",
            params=[str(path), delimiter, f"scans_{tag}", f"rejects_{tag}"],
        )
        frame = rel.pl()
        # duckdb numbers data lines from the header line (line 1); source_row counts data rows.
        rejects = con.sql(
            # One reject row per broken column: keep one per line.
            "SELECT line - 1 AS source_row,"
            " regexp_replace(any_value(csv_line), '^[\\r\\n]+|[\\r\\n]+$', '', 'g') AS raw_line,"
            " 'malformed_line: ' || lower(any_value(error_type::VARCHAR)) || ' ('"
            " || any_value(error_message) || ')' AS reject_reason"
            f" FROM rejects_{tag} GROUP BY line ORDER BY line"
        ).pl()
    except duckdb.Error as exc:
        raise LandingFileError(f"{path}: not a readable CSV file ({exc})") from exc
    finally:
        con.execute(f"DROP TABLE IF EXISTS rejects_{tag}; DROP TABLE IF EXISTS scans_{tag}")
        con.close()
    if frame.width == 0:
        raise LandingFileError(f"{path}: no header line")
    # Good rows are numbered in order, skipping the numbers of rejected lines.
    rejected = set(rejects["source_row"].to_list())
    numbers, n = [], 0
    for _ in range(frame.height):
        n += 1
        while n in rejected:
            n += 1
        numbers.append(n)
    frame = frame.with_columns(
        pl.Series("source_row", numbers, pl.Int64),
        pl.lit(None, pl.String).alias("raw_line"),
        pl.lit(None, pl.String).alias("reject_reason"),
    )
    return pl.concat([frame, rejects.cast({"source_row": pl.Int64})], how="diagonal_relaxed")


@cache
def _scratch_database() -> duckdb.DuckDBPyConnection:
    # One in-memory database for CSV reads and row hashes (opening one costs more than reading
    # a small file); each caller takes a cursor of its own, so threads never share one.
    return duckdb.connect()


def _read_jsonl(path: Path) -> pl.DataFrame:
    rows: list[dict] = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                value = json.loads(raw.decode("utf-8"))
                if not isinstance(value, dict):
                    raise ValueError("line is not a JSON object")
                # Every value as text, like the CSV reader, so one parser handles both.
                row = {k: None if v is None else _as_text(v) for k, v in value.items()}
                row["source_row"] = number
            except (ValueError, UnicodeDecodeError) as exc:
                row = {
                    "source_row": number,
                    "raw_line": raw.decode("utf-8", "replace").rstrip("\n"),
                    "reject_reason": f"malformed_line: {exc}",
                }
            rows.append(row)
    if not rows:
        raise LandingFileError(f"{path}: file has no rows")
    frame = pl.DataFrame(rows, infer_schema_length=None)
    for column in ("raw_line", "reject_reason"):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(column))
    return frame.cast({c: pl.String for c in frame.columns if c != "source_row"})


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def read_sasrec(path: Path) -> pl.DataFrame:
    """Read a SASRec ``user item`` file (whitespace separated, no header)."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines:
        raise LandingFileError(f"{path}: file is empty (no header, no rows)")
    users, items, raws, reasons = [], [], [], []
    for line in lines:
        parts = line.split()
        ok = len(parts) == 2 and all(p.isdigit() for p in parts)
        users.append(parts[0] if ok else None)
        items.append(parts[1] if ok else None)
        raws.append(None if ok else line)
        reasons.append(None if ok else "malformed_line: expected 'user item'")
    return pl.DataFrame(
        {
            "user": users,
            "item": items,
            "source_row": range(1, len(lines) + 1),
            "raw_line": raws,
            "reject_reason": reasons,
        },
        schema_overrides={"source_row": pl.Int64, "raw_line": pl.String, "reject_reason": pl.String},
    )


def is_sasrec_file(path: Path) -> bool:
    if Path(path).suffix.lower() != ".txt":
        return False
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline().split()
    return len(first) == 2 and all(p.isdigit() for p in first)


# ---------------------------------------------------------------------------- parsing helpers

_TS_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S UTC",
    "%Y-%m-%d",
)


def parse_ts(column: str, zone: str = "UTC") -> pl.Expr:
    """Text → UTC datetime; text without an offset is read as local time in ``zone``.

    Unparseable text becomes null (the caller flags it).
    """
    # chrono's %z wants "+00:00"; ISO 8601 also allows "Z".
    text = pl.col(column).cast(pl.String).str.strip_chars().str.replace(r"Z$", "+00:00")
    candidates = []
    for fmt in _TS_FORMATS:
        if "%z" in fmt:
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


def _ts_expr(frame: pl.DataFrame, column: str, zone: str = "UTC") -> pl.Expr:
    dtype = frame.schema[column]
    if isinstance(dtype, pl.Datetime):
        col = pl.col(column)
        return _localize(col, zone) if dtype.time_zone is None else col.dt.convert_time_zone("UTC")
    return parse_ts(column, zone)


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


def _reject_reason(checks: dict[str, pl.Expr]) -> pl.Expr:
    """Combine the reader's reason with 'unparseable: col,...' for fields that failed."""
    failed = pl.concat_str(
        [pl.when(expr).then(pl.lit(name)) for name, expr in checks.items()],
        separator=",",
        ignore_nulls=True,
    )
    unparseable = pl.when(failed != "").then(pl.lit("unparseable: ") + failed)
    return pl.coalesce(pl.col("reject_reason"), unparseable)


def _blank_to_null(column: str) -> pl.Expr:
    text = pl.col(column).cast(pl.String).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


def stable_ids(frame: pl.DataFrame, columns: list[str], prefix: str) -> pl.Series:
    """A content hash of each row (md5, stable across versions and machines)."""
    if frame.height == 0:
        return pl.Series("id", [], pl.String)
    parts = ", ".join(f"coalesce(CAST(\"{c}\" AS VARCHAR), '\\N')" for c in columns)
    # A cursor of its own: files are adapted in parallel threads, and DuckDB's default
    # connection (what duckdb.sql uses) deadlocks when two threads scan frames through it.
    with _scratch_database().cursor() as con:
        con.register("frame", frame.select(columns).to_arrow())
        ids = con.sql(f"SELECT '{prefix}' || md5(concat_ws(chr(31), {parts})) AS id FROM frame").pl()
    return ids["id"]


def _with_lineage(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    return frame.with_columns(pl.lit(str(path)).alias("source_file"))


# ---------------------------------------------------------------------------- formats


def detect_format(path: Path, columns: list[str]) -> str:
    names = set(columns) - {"source_row", "raw_line", "reject_reason"}
    if ONLINE_RETAIL_COLUMNS <= names:
        return "online_retail"
    if REES46_COLUMNS <= names:
        return "rees46"
    if names & {"ts", "event_type", "user_id"}:
        return "canonical"
    if names & {"title", "updated_at", "item_id"}:
        return "canonical_catalog"
    raise LandingFileError(
        f"{path}: columns {sorted(names)} match no known format (canonical events need"
        f" {list(schemas.EVENT_REQUIRED)}; see data_contracts/adapters.py for the others)"
    )


def _check_columns(path: Path, frame: pl.DataFrame, required, allowed) -> None:
    names = set(frame.columns) - {"source_row", "raw_line", "reject_reason"}
    missing = [c for c in required if c not in names]
    extra = sorted(names - set(allowed))
    if missing:
        raise LandingFileError(f"{path}: missing required columns {missing}")
    if extra:
        raise LandingFileError(
            f"{path}: unexpected columns {extra}; the canonical columns are {list(allowed)}"
        )


def adapt_file(path: Path) -> AdaptedFile:
    """Read one landed file and convert it to canonical raw events and catalog rows."""
    path = Path(path)
    if is_sasrec_file(path):
        return AdaptedFile("sasrec", *_adapt_sasrec(path, read_sasrec(path)))
    if path.suffix.lower() == ".txt":
        raise LandingFileError(f"{path}: a .txt file must hold SASRec 'user item' lines")
    frame = read_table(path)
    fmt = detect_format(path, frame.columns)
    if fmt == "online_retail":
        return AdaptedFile(fmt, *_adapt_online_retail(path, frame))
    if fmt == "rees46":
        return AdaptedFile(fmt, *_adapt_rees46(path, frame))
    if fmt == "canonical_catalog":
        return AdaptedFile(fmt, schemas.empty(schemas.RAW_EVENT_SCHEMA), adapt_catalog(path, frame))
    return AdaptedFile(fmt, adapt_canonical_events(path, frame), schemas.empty(schemas.RAW_CATALOG_SCHEMA))


def adapt_canonical_events(path: Path, frame: pl.DataFrame) -> pl.DataFrame:
    _check_columns(path, frame, schemas.EVENT_REQUIRED, schemas.EVENT_COLUMNS)
    for column in schemas.EVENT_COLUMNS:
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(column))
    ts = _ts_expr(frame, "ts")
    quantity = _num_expr(frame, "quantity", pl.Int64)
    price = _num_expr(frame, "price", pl.Float64)
    out = frame.with_columns(
        ts.alias("ts"),
        quantity.alias("quantity"),
        price.alias("price"),
        *[_blank_to_null(c).alias(c) for c in ("event_id", "user_id", "item_id", "session_id", "source")],
        pl.col("event_type").cast(pl.String).str.strip_chars().str.to_lowercase().alias("event_type"),
        _reject_reason(
            {
                "ts": _failed(frame, "ts", ts),
                "quantity": _failed(frame, "quantity", quantity),
                "price": _failed(frame, "price", price),
            }
        ).alias("reject_reason"),
    )
    out = out.with_columns(pl.col("source").fill_null(pl.lit("canonical")))
    if out["event_id"].null_count():
        hashed = stable_ids(out, [c for c in schemas.EVENT_COLUMNS if c != "event_id"], "ev-")
        out = out.with_columns(pl.coalesce(pl.col("event_id"), hashed).alias("event_id"))
    return schemas.conform(_with_lineage(out, path), schemas.RAW_EVENT_SCHEMA)


def adapt_catalog(path: Path, frame: pl.DataFrame) -> pl.DataFrame:
    _check_columns(path, frame, schemas.CATALOG_REQUIRED, schemas.CATALOG_COLUMNS)
    for column in schemas.CATALOG_COLUMNS:
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(column))
    updated = _ts_expr(frame, "updated_at")
    price = _num_expr(frame, "price", pl.Float64)
    in_stock_text = pl.col("in_stock").cast(pl.String).str.strip_chars().str.to_lowercase()
    in_stock = (
        pl.when(in_stock_text.is_in(["true", "1", "yes", "t"]))
        .then(True)
        .when(in_stock_text.is_in(["false", "0", "no", "f"]))
        .then(False)
    )
    out = frame.with_columns(
        updated.alias("updated_at"),
        price.alias("price"),
        in_stock.fill_null(True).alias("in_stock"),
        *[_blank_to_null(c).alias(c) for c in ("item_id", "title", "description", "category", "brand")],
        _blank_to_null("currency").fill_null("USD").alias("currency"),
        _reject_reason(
            {"updated_at": _failed(frame, "updated_at", updated), "price": _failed(frame, "price", price)}
        ).alias("reject_reason"),
    )
    return schemas.conform(_with_lineage(out, path), schemas.RAW_CATALOG_SCHEMA)


def _adapt_online_retail(path: Path, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Invoice lines → purchases; cancellations (Invoice 'C...') → refunds; fees are no items.

    InvoiceDate is the shop's local time (Europe/London) and is converted to UTC.
    """
    local = _ts_expr(frame, "InvoiceDate", zone="Europe/London")
    quantity = _num_expr(frame, "Quantity", pl.Int64)
    price = _num_expr(frame, "Price", pl.Float64)
    customer = _num_expr(frame, "Customer ID", pl.Float64).cast(pl.Int64).cast(pl.String)
    invoice = pl.col("Invoice").cast(pl.String).str.strip_chars()
    code = pl.col("StockCode").cast(pl.String).str.strip_chars()
    is_cancel = invoice.str.starts_with("C")
    is_product = code.str.contains(ONLINE_RETAIL_PRODUCT_CODE)
    out = frame.with_columns(
        local.alias("ts"),
        customer.alias("user_id"),
        code.alias("item_id"),
        pl.when(is_cancel).then(pl.lit("refund")).otherwise(pl.lit("purchase")).alias("event_type"),
        invoice.alias("session_id"),
        # A cancellation's quantity is negative in the source; a refund counts items back.
        pl.when(is_cancel).then(quantity.abs()).otherwise(quantity).alias("quantity"),
        price.alias("price"),
        pl.lit("online_retail").alias("source"),
    ).with_columns(
        pl.coalesce(
            pl.col("reject_reason"),
            pl.when(code.is_not_null() & ~is_product).then(pl.lit("not_an_item: fee or note code ") + code),
            _reject_reason(
                {
                    "InvoiceDate": _failed(frame, "InvoiceDate", local),
                    "Quantity": _failed(frame, "Quantity", quantity),
                    "Price": _failed(frame, "Price", price),
                }
            ),
        ).alias("reject_reason")
    )
    ids = stable_ids(frame, sorted(ONLINE_RETAIL_COLUMNS), "or-")
    events = _with_lineage(out.with_columns(ids.alias("event_id")), path)
    # The catalog is what the shop sold: product lines with a positive price and a title.
    catalog = (
        out.filter(is_product & ~is_cancel & (pl.col("price") > 0) & pl.col("Description").is_not_null())
        .select(
            pl.col("item_id"),
            pl.col("Description").cast(pl.String).str.strip_chars().alias("title"),
            pl.col("price"),
            pl.lit("GBP").alias("currency"),
            pl.lit(True).alias("in_stock"),
            pl.col("ts").alias("updated_at"),
            pl.col("source_row"),
        )
        .unique(subset=["item_id", "title", "price"], keep="first", maintain_order=True)
    )
    catalog = _with_lineage(catalog, path)
    return (
        schemas.conform(events, schemas.RAW_EVENT_SCHEMA),
        schemas.conform(catalog, schemas.RAW_CATALOG_SCHEMA),
    )


def _adapt_rees46(path: Path, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    ts = _ts_expr(frame, "event_time")
    price = _num_expr(frame, "price", pl.Float64)
    raw_type = pl.col("event_type").cast(pl.String).str.strip_chars()
    category = _blank_to_null("category_code").str.replace_all(".", " > ", literal=True)
    brand = _blank_to_null("brand")
    out = frame.with_columns(
        ts.alias("ts"),
        _blank_to_null("user_id").alias("user_id"),
        _blank_to_null("product_id").alias("item_id"),
        raw_type.replace_strict(REES46_EVENT_TYPES, default=raw_type).alias("event_type"),
        _blank_to_null("user_session").alias("session_id"),
        price.alias("price"),
        pl.lit("rees46").alias("source"),
        _reject_reason(
            {"event_time": _failed(frame, "event_time", ts), "price": _failed(frame, "price", price)}
        ).alias("reject_reason"),
    )
    ids = stable_ids(frame, sorted(REES46_COLUMNS), "rr-")
    events = _with_lineage(out.with_columns(ids.alias("event_id")), path)
    leaf = category.str.split(" > ").list.last()
    catalog = (
        out.filter(pl.col("item_id").is_not_null() & pl.col("reject_reason").is_null())
        .select(
            pl.col("item_id"),
            pl.concat_str([brand.fill_null(""), leaf.fill_null("item " + pl.col("item_id"))], separator=" ")
            .str.strip_chars()
            .alias("title"),
            category.alias("category"),
            brand.alias("brand"),
            pl.col("price"),
            pl.lit("USD").alias("currency"),
            pl.lit(True).alias("in_stock"),
            pl.col("ts").alias("updated_at"),
            pl.col("source_row"),
        )
        .unique(subset=["item_id", "title", "category", "brand", "price"], keep="first", maintain_order=True)
    )
    catalog = _with_lineage(catalog, path)
    return (
        schemas.conform(events, schemas.RAW_EVENT_SCHEMA),
        schemas.conform(catalog, schemas.RAW_CATALOG_SCHEMA),
    )


def _adapt_sasrec(path: Path, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    out = frame.with_columns(
        (pl.lit(SASREC_BASE_TIME) + pl.duration(seconds=pl.col("source_row")))
        .dt.convert_time_zone("UTC")
        .alias("ts"),
        pl.col("user").alias("user_id"),
        pl.col("item").alias("item_id"),
        pl.lit("view").alias("event_type"),
        pl.lit("sasrec").alias("source"),
        ("sr-" + pl.lit(path.name) + "-" + pl.col("source_row").cast(pl.String)).alias("event_id"),
    )
    events = _with_lineage(out, path)
    catalog = (
        out.filter(pl.col("item_id").is_not_null())
        .group_by("item_id", maintain_order=True)
        .agg(pl.col("source_row").first())
        .with_columns(
            ("item " + pl.col("item_id")).alias("title"),
            pl.lit(0.0).alias("price"),
            pl.lit(True).alias("in_stock"),
            pl.lit(SASREC_BASE_TIME).dt.convert_time_zone("UTC").alias("updated_at"),
        )
    )
    catalog = _with_lineage(catalog, path)
    return (
        schemas.conform(events, schemas.RAW_EVENT_SCHEMA),
        schemas.conform(catalog, schemas.RAW_CATALOG_SCHEMA),
    )


def sniff_format(path: Path) -> str:
    """The format of a landed file from its header alone (no rows are read)."""
    path = Path(path)
    if is_sasrec_file(path):
        return "sasrec"
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise LandingFileError(f"{path}: file is empty (no header, no rows)")
    if suffix == ".parquet":
        columns = list(pl.read_parquet_schema(path))
    elif suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8", errors="replace") as handle:
            columns = [
                c.strip().strip('"')
                for c in handle.readline().rstrip("\r\n").split("\t" if suffix == ".tsv" else ",")
            ]
    elif suffix in (".jsonl", ".ndjson"):
        with open(path, encoding="utf-8", errors="replace") as handle:
            try:
                columns = list(json.loads(handle.readline()))
            except ValueError:
                return "canonical"
    else:
        raise LandingFileError(f"{path}: unsupported file type {suffix!r}; use one of {EVENT_SUFFIXES}")
    return detect_format(path, columns)


# Formats whose event files also describe the items they mention.
FORMATS_WITH_ITEMS = ("online_retail", "rees46", "sasrec")
