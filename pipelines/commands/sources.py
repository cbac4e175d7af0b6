"""shopml sources list|suggest|check: the source files that map a shop's exports to the contracts.

``check_sample`` is also what ``shopml land`` runs before it copies a file: the same reading,
mapping and row rules as ingest, on the header and the first rows.
"""

from __future__ import annotations

import argparse
import csv
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from data_contracts import adapters, schemas
from data_contracts.adapters import reading
from data_contracts.settings import Settings
from pipelines.ingest import transform

SAMPLE_ROWS = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="list the shipped sources and the landing folder's own")
    suggest = sub.add_parser("suggest", help="print a proposed source file for FILE, to edit")
    suggest.add_argument("path", type=Path, metavar="FILE")
    suggest.add_argument("--name", help="the source's name (default: from the file name)")
    check = sub.add_parser("check", help="dry-run a source on the first rows of FILE: clean vs quarantined")
    check.add_argument("path", type=Path, metavar="FILE")
    check.add_argument("--source", help="the source to read it with (default: picked from the header)")
    check.add_argument(
        "--rows", type=int, default=SAMPLE_ROWS, help=f"rows to sample (default {SAMPLE_ROWS})"
    )


@dataclass
class SampleReport:
    """What ingest would make of the first rows of a file."""

    path: Path
    source: adapters.Source
    rows: int = 0
    clean: int = 0
    quarantined: int = 0
    duplicates: int = 0
    by_rule: Counter = field(default_factory=Counter)  # a row may break several rules
    # Source values of event types that would be quarantined, with their counts.
    unknown_event_types: Counter = field(default_factory=Counter)
    items: int = 0  # catalog rows the file describes
    catalog_by_rule: Counter = field(default_factory=Counter)  # of those, quarantined by rule

    def describe(self) -> str:
        lines = [
            f"{self.path} read with source {self.source.name}: {self.rows:,} sampled rows → {self.clean:,} clean,"
            f" {self.quarantined:,} quarantined, {self.duplicates:,} duplicates"
            + (f"; {self.items:,} catalog rows" if self.items else "")
        ]
        if self.by_rule:
            rules = ", ".join(f"{rule} {n:,}" for rule, n in self.by_rule.most_common())
            lines.append(f"  quarantined by rule: {rules}")
        if self.catalog_by_rule:
            rules = ", ".join(f"{rule} {n:,}" for rule, n in self.catalog_by_rule.most_common())
            lines.append(f"  catalog rows quarantined by rule: {rules}")
        if self.unknown_event_types:
            common = sorted(self.unknown_event_types.items(), key=lambda vn: (-vn[1], str(vn[0])))[:10]
            values = ", ".join(f"{v!r} {n:,}" for v, n in common)
            lines.append(f"  event types the source does not map: {values}")
        if self.source.kind == "events" and not self.source.carries_items:
            lines.append("  (unknown_item is checked at ingest, against the catalog in the warehouse)")
        return "\n".join(lines)


def check_sample(path: Path, source: adapters.Source, rows: int = SAMPLE_ROWS) -> SampleReport:
    """Read, map and check the first ``rows`` rows of ``path`` with ``source``, as ingest would.

    A file that ingest could not read raises ``LandingFileError`` naming ``path``.
    """
    path = Path(path)
    report = SampleReport(path, source)
    with tempfile.TemporaryDirectory(prefix="shopml-sample-") as folder:
        try:
            copy = reading.sample_copy(path, rows, Path(folder))
            adapted = adapters.adapt_file(copy, source=source)
        except adapters.LandingFileError as exc:
            raise adapters.LandingFileError(
                str(exc).replace(str(Path(folder) / path.name), str(path))
            ) from exc
    report.items = adapted.catalog.height
    if source.kind == "catalog":
        tables = transform.build_catalog(adapted.catalog)
        report.rows, report.clean = adapted.catalog.height, tables.history.height
        report.quarantined, report.duplicates = tables.quarantined.height, tables.duplicates
        report.by_rule = _rules(tables.quarantined)
        return report
    known = None
    if source.carries_items:
        items = transform.build_catalog(adapted.catalog)
        known = items.current["item_id"]
        report.catalog_by_rule = _rules(items.quarantined)
    now = datetime.now(timezone.utc)
    split = transform.clean_events(adapted.events, known, now, Settings.from_env().future_skew())
    report.rows, report.clean = split.rows_in, split.clean.height
    report.quarantined, report.duplicates = split.quarantined.height, split.duplicates
    report.by_rule = _rules(split.quarantined)
    unknown = split.quarantined.filter(pl.col("rule").str.contains("unknown_event_type"))
    report.unknown_event_types = Counter(dict(unknown.group_by("event_type").len().iter_rows()))
    return report


def _rules(quarantined: pl.DataFrame) -> Counter:
    counts: Counter = Counter()
    for rule in quarantined["rule"].to_list() if quarantined.height else []:
        for name in rule.split(";"):
            counts[name] += 1
    return counts


# ---------------------------------------------------------------------------- suggest

_ROLES = {
    "event_id": r"^(event_?id|id|uuid)$",
    "ts": r"(time|date|^ts$|timestamp|when)",
    "user_id": r"(user|customer|client|visitor|shopper|member|buyer)",
    "item_id": r"(item|product|sku|stock_?code|article|asin|offer)",
    "event_type": r"(event_?type|action|behaviou?r|^type$|^event$|activity)",
    "session_id": r"(session|invoice|order|basket|cart_id|visit)",
    "quantity": r"(qty|quantity|count|units)",
    "price": r"(price|amount|value|cost)",
}
_EVENT_WORDS = {
    "view": r"^(pv|view|views|click|detail|page_?view|visit|impression)$",
    "add_to_cart": r"^(cart|add|add_?to_?cart|addtocart|basket)$",
    "remove_from_cart": r"^(remove|remove_?from_?cart|removefromcart)$",
    "purchase": r"^(buy|purchase|order|transaction|checkout|sale)$",
    "refund": r"^(refund|return|cancel|cancellation)$",
}


def _looks_like_data(value: str) -> bool:
    return bool(re.fullmatch(r"[-+]?\d+([.,]\d+)?", value.strip())) or bool(
        re.match(r"\d{4}-\d{2}-\d{2}", value.strip())
    )


def _sample_text(
    path: Path, delimiter: str, header: bool, rows: int = 200
) -> tuple[list[str], list[list[str]]]:
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        records = [r for _, r in zip(range(rows + 1), csv.reader(handle, delimiter=delimiter), strict=False)]
    if header:
        return [c.strip() for c in records[0]], records[1:]
    width = len(records[0]) if records else 0
    return [f"column_{i + 1}" for i in range(width)], records


def suggest(path: Path, name: str | None = None) -> str:
    """A proposed source file for ``path``: column roles guessed from names and values."""
    path = Path(path)
    reading.check_file(path)
    suffix = path.suffix.lower()
    delimiter = ","
    fmt = {
        ".tsv": "tsv",
        ".parquet": "parquet",
        ".jsonl": "jsonl",
        ".ndjson": "jsonl",
        ".txt": "whitespace",
    }.get(suffix, "csv")
    if fmt in ("parquet", "jsonl"):
        frame = reading.read_table(path).head(200)
        columns = [c for c in frame.columns if c not in ("source_row", "raw_line", "reject_reason")]
        values = {c: [str(v) for v in frame[c].drop_nulls().to_list()] for c in columns}
        header = True
    else:
        line = reading.first_line(path)
        if fmt == "whitespace":
            fields = line.split()
        else:
            delimiter = "\t" if fmt == "tsv" else next((d for d in (",", ";", "\t", "|") if d in line), ",")
            fields = next(csv.reader([line], delimiter=delimiter), [])
        header = fmt != "whitespace" and not any(_looks_like_data(f) for f in fields)
        if fmt == "whitespace":
            with open(path, encoding="utf-8", errors="replace") as handle:
                records = [r.split() for _, r in zip(range(200), handle, strict=False)]
            columns = [f"column_{i + 1}" for i in range(len(fields))]
        else:
            columns, records = _sample_text(path, delimiter, header)
        values = {
            c: [r[i].strip() for r in records if i < len(r) and r[i].strip()] for i, c in enumerate(columns)
        }
    roles = _guess_roles(columns, values)
    name = name or re.sub(r"[^a-z0-9_]+", "_", path.stem.lower()).strip("_") or "my_source"
    if not name[0].isalpha():
        name = "source_" + name
    out = [
        f"# A source for {path.name}, guessed from its first rows: check every line, then save it as",
        f"# <landing folder>/sources/{name}.yaml and try it with: shopml sources check {path} --source {name}",
        f"name: {name}",
        f"description: {path.name} (edit me)",
        "read:",
    ]
    if fmt in ("whitespace", "tsv") or (fmt == "csv" and not header):
        out.append(f"  format: {fmt}")
    if not header:
        out.append("  header: false  # the first line is data: these are the columns in order (rename them)")
    out.append(f"  columns: [{', '.join(_yaml_name(c) for c in columns)}]")
    if fmt == "csv" and delimiter != ",":
        out.append(f"  delimiter: {_yaml_name(delimiter)}")
    out += ["events:", "  fields:"]
    for role in schemas.EVENT_COLUMNS:
        if role in roles:
            out.append(f"    {role}: {_yaml_name(roles[role])}")
    missing = [r for r in ("ts", "user_id", "item_id", "event_type") if r not in roles]
    for role in missing:
        out.append(f"    # {role}: <column>  # not found: name the column, or give a constant below")
    unused = [c for c in columns if c not in roles.values()]
    if unused:
        out.append(f"    # not mapped: {', '.join(unused)} (item columns can go under catalog:)")
    out += ["  constants:", f"    source: {name}"]
    if "event_type" not in roles:
        out.append("    # event_type: purchase  # when every row is one kind of event")
    ts = roles.get("ts")
    if ts:
        unit = _epoch_unit(values.get(ts, []))
        out.append("  timestamp:")
        if unit:
            out.append(f"    unit: {unit}  # numbers since 1970-01-01 UTC")
        else:
            out.append('    # format: "%Y-%m-%d %H:%M:%S"  # strftime; ISO 8601 is read without one')
            out.append("    zone: UTC  # of times written without an offset")
    if "event_type" in roles:
        distinct = Counter(v.strip().lower() for v in values.get(roles["event_type"], []))
        out += [
            "  # Every value the file uses, mapped to a canonical event type; null (or a value left out)",
            f"  # is quarantined as unknown_event_type. Canonical: {', '.join(schemas.EVENT_TYPES)}.",
            "  event_types:",
        ]
        for value, count in distinct.most_common(30):
            guess = next((t for t, pattern in _EVENT_WORDS.items() if re.match(pattern, value)), None)
            out.append(f"    {_yaml_name(value)}: {guess or 'null'}  # {count} of the sampled rows")
    return "\n".join(out) + "\n"


def _guess_roles(columns: list[str], values: dict[str, list[str]]) -> dict[str, str]:
    roles: dict[str, str] = {}
    for role, pattern in _ROLES.items():
        for column in columns:
            if column not in roles.values() and re.search(pattern, column, re.IGNORECASE):
                roles[role] = column
                break
    # Header-less files or unusual names: guess from the values.
    free = [c for c in columns if c not in roles.values() and values.get(c)]
    if "ts" not in roles:
        for column in free:
            sample = values[column]
            dated = sum(bool(re.match(r"\d{4}-\d{2}-\d{2}", v)) for v in sample)
            if _epoch_unit(sample) or dated >= 0.6 * len(sample):
                roles["ts"] = column
                free.remove(column)
                break
    if "event_type" not in roles and free:

        def words(column: str) -> float:
            sample = values[column]
            known = sum(any(re.match(p, v.strip().lower()) for p in _EVENT_WORDS.values()) for v in sample)
            return known / len(sample)

        best = max(free, key=words)
        if words(best) < 0.5:
            few = [c for c in free if len(set(values[c])) <= 12 and not all(v.isdigit() for v in values[c])]
            best = min(few, key=lambda c: len(set(values[c])), default=None)
        if best is not None:
            roles["event_type"] = best
            free.remove(best)
    for role in ("user_id", "item_id"):
        if role not in roles and free:
            roles[role] = free.pop(0)
    return roles


def _epoch_unit(sample: list[str]) -> str | None:
    """s or ms when most values are integers of that many digits."""
    if not sample:
        return None
    digits = Counter(len(v) for v in sample if re.fullmatch(r"\d+", v))
    if sum(digits[n] for n in (9, 10)) >= 0.6 * len(sample):
        return "s"
    if sum(digits[n] for n in (12, 13)) >= 0.6 * len(sample):
        return "ms"
    return None


def _yaml_name(value: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) and value.lower() not in (
        "null",
        "true",
        "false",
        "yes",
        "no",
    ):
        return value
    return "'" + value.replace("'", "''") + "'"


# ---------------------------------------------------------------------------- the command


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    sources = transform.landed_sources(settings)
    if args.action == "list":
        for source in sources.all:
            where = "shipped" if source.shipped else str(source.path)
            print(f"{source.name:<20} {source.kind:<7} {where}: {source.description}")
        return 0
    if args.action == "suggest":
        print(suggest(args.path, args.name), end="")
        return 0
    source = sources.get(args.source) if args.source else sources.detect(args.path)
    print(check_sample(args.path, source, args.rows).describe())
    return 0
