"""Adapters: read a landed file with its source and return canonical raw rows.

A source (a small YAML file: ``spec``) says how to read one kind of export and which of its
columns become which canonical field; one mapping engine (``engine``) applies it. The
formats shipped in ``shipped/`` are sources like any other: canonical events and catalog
(CSV, Parquet or JSONL), Online Retail II and the original UCI Online Retail naming, REES46
clickstreams and SASRec ``user item`` files. A shop's own sources live in the landing
folder's ``sources/``. ``registry`` picks the source of a file, in one place.

Every reader returns rows in the canonical raw schema (see ``schemas``): values it could not
parse are left null and the row carries a ``reject_reason``, so the contract rules can
quarantine it with its reason instead of losing it. A file that cannot be read as a whole
(empty, no known format, missing required columns) raises ``LandingFileError`` naming the
file and the problem; a source file that cannot be used raises ``SourceError``.
"""

from data_contracts.adapters.engine import AdaptedFile, parse_ts
from data_contracts.adapters.reading import EVENT_SUFFIXES, LandingFileError, read_table, stable_ids
from data_contracts.adapters.registry import Sources, adapt_file, shipped_sources, write_note
from data_contracts.adapters.spec import Source, SourceError, load_source

__all__ = [
    "EVENT_SUFFIXES",
    "AdaptedFile",
    "LandingFileError",
    "Source",
    "SourceError",
    "Sources",
    "adapt_file",
    "load_source",
    "parse_ts",
    "read_table",
    "shipped_sources",
    "stable_ids",
    "write_note",
]
