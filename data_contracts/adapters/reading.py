"""Reading landed files as text frames: every row kept, with its row number and reject reason.

A reader returns the file's columns plus ``source_row``, ``raw_line`` and ``reject_reason``:
a line that does not parse (too few or too many fields, invalid text, broken JSON) becomes
a row whose only values are ``raw_line`` and ``reject_reason``. A file that cannot be read
at all raises ``LandingFileError`` naming the file and the problem.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import uuid
from functools import cache
from pathlib import Path

import duckdb
import polars as pl

from data_contracts.adapters.spec import SUFFIXES, Read

EVENT_SUFFIXES = tuple(s for group in SUFFIXES.values() for s in group)
# How a file is read when no source says otherwise (service logs, format detection).
DEFAULT_READ = Read(columns=("*",))


class LandingFileError(ValueError):
    """A landed file that cannot be ingested as a whole; the message names file and problem."""


def check_file(path: Path) -> None:
    if not path.exists():
        raise LandingFileError(f"{path}: file does not exist")
    if not path.is_file():
        raise LandingFileError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise LandingFileError(f"{path}: file is empty (no header, no rows)")
    if path.suffix.lower() not in EVENT_SUFFIXES:
        raise LandingFileError(
            f"{path}: unsupported file type {path.suffix.lower()!r}; use one of {EVENT_SUFFIXES}"
        )


def first_line(path: Path, encoding: str = "utf-8") -> str:
    """The first line of a text file, without its line end ('' when there is none)."""
    with open(path, encoding=encoding, errors="replace", newline="") as handle:
        return handle.readline().rstrip("\r\n")


def header_columns(path: Path, read: Read = DEFAULT_READ) -> list[str]:
    """The columns a file names (Parquet schema, first JSON object, CSV header line)."""
    path = Path(path)
    check_file(path)
    fmt = read.format_of(path)
    if fmt == "parquet":
        try:
            return list(pl.read_parquet_schema(path))
        except Exception as exc:  # polars raises several types for a broken file
            raise LandingFileError(f"{path}: not a readable Parquet file ({_first_line_of(exc)})") from exc
    if fmt == "jsonl":
        # The keys of the first line that is a JSON object; broken lines are the rows' business.
        with open(path, "rb") as handle:
            for _, raw in zip(range(100), handle, strict=False):
                try:
                    value = json.loads(raw.decode("utf-8", "replace"))
                except ValueError:
                    continue
                if isinstance(value, dict):
                    return list(value)
        raise LandingFileError(f"{path}: none of the first 100 lines is a JSON object")
    line = first_line(path, read.encoding)
    if fmt == "whitespace":
        return line.split()
    fields = next(csv.reader([line], delimiter=read.delimiter_of(path), quotechar=read.quote), [])
    return [f.strip() for f in fields]


def _first_line_of(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_table(path: Path, read: Read = DEFAULT_READ) -> pl.DataFrame:
    """Read a landed file as text columns (Parquet keeps its types) plus the lineage columns."""
    path = Path(path)
    check_file(path)
    fmt = read.format_of(path)
    if fmt == "parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # polars raises several types for a broken file
            raise LandingFileError(f"{path}: not a readable Parquet file ({_first_line_of(exc)})") from exc
        return frame.with_row_index("source_row", offset=1).with_columns(
            pl.col("source_row").cast(pl.Int64),
            pl.lit(None, pl.String).alias("raw_line"),
            pl.lit(None, pl.String).alias("reject_reason"),
        )
    if fmt == "jsonl":
        return _read_jsonl(path)
    if fmt == "whitespace":
        return _read_whitespace(path, read)
    return _read_csv(path, read)


def _read_csv(path: Path, read: Read) -> pl.DataFrame:
    """Every field as text with DuckDB, which reports each rejected line with its reason."""
    delimiter = read.delimiter_of(path)
    if not read.header:
        found = len(next(csv.reader([first_line(path, read.encoding)], delimiter=delimiter), []))
        if found != len(read.columns):
            raise LandingFileError(
                f"{path}: the first line has {found} fields, the source names {len(read.columns)}"
                f" columns ({', '.join(read.columns)}); is the delimiter {delimiter!r} right?"
            )
    con = _scratch_database().cursor()
    # Reads may run in parallel threads; each names its own rejects tables.
    tag = uuid.uuid4().hex[:12]
    if read.header:
        layout = "header=true"
    else:
        names = ", ".join("'" + c.replace("'", "''") + "': 'VARCHAR'" for c in read.columns)
        layout = f"header=false, columns={{{names}}}"
    try:
        rel = con.sql(
            f"SELECT * FROM read_csv(?, {layout}, all_varchar=true, delim=?, quote=?, encoding=?,"
            " store_rejects=true, rejects_scan=?, rejects_table=?)",
            params=[str(path), delimiter, read.quote, read.encoding, f"scans_{tag}", f"rejects_{tag}"],
        )
        frame = rel.pl()
        # duckdb numbers lines from 1, the header included; source_row counts data rows.
        offset = 1 if read.header else 0
        rejects = con.sql(
            # One reject row per broken column: keep one per line.
            f"SELECT line - {offset} AS source_row, line,"
            " regexp_replace(any_value(csv_line), '^[\\r\\n]+|[\\r\\n]+$', '', 'g') AS raw_line,"
            " bool_or(error_type = 'INVALID ENCODING') AS bad_text,"
            " 'malformed_line: ' || lower(any_value(error_type::VARCHAR)) || ' ('"
            " || any_value(error_message) || ')' AS reject_reason"
            f" FROM rejects_{tag} GROUP BY line ORDER BY line"
        ).pl()
    except duckdb.Error as exc:
        raise LandingFileError(f"{path}: not a readable CSV file ({_first_line_of(exc)})") from exc
    finally:
        con.execute(f"DROP TABLE IF EXISTS rejects_{tag}; DROP TABLE IF EXISTS scans_{tag}")
        con.close()
    if frame.width == 0:
        raise LandingFileError(f"{path}: no header line")
    if rejects["bad_text"].any():
        rejects = _raw_bytes_of(path, rejects)
    rejects = rejects.drop("line", "bad_text")
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


def _raw_bytes_of(path: Path, rejects: pl.DataFrame) -> pl.DataFrame:
    """Invalid text: the line as it is in the file, bytes that are not UTF-8 written as \\xNN."""
    wanted = set(rejects.filter("bad_text")["line"].to_list())
    lines: dict[int, str] = {}
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number in wanted:
                lines[number] = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
                if len(lines) == len(wanted):
                    break
    exact = pl.Series([lines.get(n) for n in rejects["line"]], dtype=pl.String)
    return rejects.with_columns(
        pl.when(pl.col("bad_text") & exact.is_not_null())
        .then(exact)
        .otherwise(pl.col("raw_line"))
        .alias("raw_line")
    )


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
                for text in (*row, *row.values()):
                    if text is not None:
                        # "\ud800" is valid JSON but no text: it cannot be stored.
                        text.encode("utf-8")
                row["source_row"] = number
            except (ValueError, UnicodeError) as exc:
                row = {
                    "source_row": number,
                    "raw_line": raw.decode("utf-8", "backslashreplace").rstrip("\r\n"),
                    "reject_reason": f"malformed_line: {_describe_json_error(exc)}",
                }
            rows.append(row)
    if not rows:
        raise LandingFileError(f"{path}: file has no rows")
    frame = pl.DataFrame(rows, infer_schema_length=None)
    for column in ("raw_line", "reject_reason"):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.String).alias(column))
    return frame.cast({c: pl.String for c in frame.columns if c != "source_row"})


def _describe_json_error(exc: Exception) -> str:
    if isinstance(exc, UnicodeEncodeError):
        return "a \\u escape is a lone surrogate, not a character"
    return str(exc)


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _read_whitespace(path: Path, read: Read) -> pl.DataFrame:
    """Fields separated by spaces or tabs, no header, no quoting (e.g. SASRec ``user item``)."""
    pattern = re.compile(read.line_pattern) if read.line_pattern else None
    width = len(read.columns)
    values: list[list[str | None]] = [[] for _ in read.columns]
    raws, reasons = [], []
    with open(path, encoding=read.encoding, errors="backslashreplace", newline="") as handle:
        lines = handle.read().splitlines()
    for line in lines:
        parts = line.split()
        ok = len(parts) == width and (pattern is None or pattern.fullmatch(line.strip()) is not None)
        for column, part in zip(values, parts if ok else [None] * width, strict=True):
            column.append(part)
        raws.append(None if ok else line)
        reasons.append(None if ok else f"malformed_line: expected '{' '.join(read.columns)}'")
    return pl.DataFrame(
        {
            **dict(zip(read.columns, values, strict=True)),
            "source_row": range(1, len(lines) + 1),
            "raw_line": raws,
            "reject_reason": reasons,
        },
        schema_overrides={
            **{c: pl.String for c in read.columns},
            "source_row": pl.Int64,
            "raw_line": pl.String,
            "reject_reason": pl.String,
        },
    )


def sample_copy(path: Path, rows: int, folder: Path) -> Path:
    """The first ``rows`` rows of ``path`` as a file of the same name in ``folder``."""
    path = Path(path)
    check_file(path)
    target = Path(folder) / path.name
    if path.suffix.lower() == ".parquet":
        try:
            pl.read_parquet(path, n_rows=rows).write_parquet(target)
        except Exception as exc:  # polars raises several types for a broken file
            raise LandingFileError(f"{path}: not a readable Parquet file ({_first_line_of(exc)})") from exc
        return target
    with open(path, "rb") as source, open(target, "wb") as out:
        for number, line in enumerate(source):
            if number > rows:  # the header line and `rows` more
                break
            out.write(line)
    return target


def copy_file(path: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, target)
    return target


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
