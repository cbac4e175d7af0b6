"""Which source reads a file: the shipped sources, a shop's own, and format detection.

Detection happens here and only here. A file is read with the source named beside it (a
``<file>.source`` note written by ``shopml land --source``), else with the one source whose
columns its header has (header-less files: whose ``first_line`` pattern its first line
matches). No match, or several, is an error naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from data_contracts.adapters import engine, reading
from data_contracts.adapters.reading import LandingFileError
from data_contracts.adapters.spec import LINEAGE_COLUMNS, Source, SourceError, load_source

SHIPPED_DIR = Path(__file__).parent / "shipped"
NOTE_SUFFIX = ".source"


@cache
def shipped_sources() -> tuple[Source, ...]:
    return tuple(load_source(path, shipped=True) for path in sorted(SHIPPED_DIR.glob("*.yaml")))


@dataclass(frozen=True)
class Sources:
    """The sources a landing folder knows: the shipped ones and the shop's own."""

    all: tuple[Source, ...]

    @classmethod
    def load(cls, folder: Path | None = None) -> Sources:
        """Shipped sources plus every ``*.yaml`` in ``folder`` (the landing folder's sources/)."""
        sources = list(shipped_sources())
        taken = {s.name: s for s in sources}
        if folder is not None and Path(folder).is_dir():
            for path in sorted(Path(folder).glob("*.y*ml")):
                source = load_source(path)
                if source.name in taken:
                    other = taken[source.name]
                    what = "a shipped source" if other.shipped else f"the source in {other.path}"
                    raise SourceError(f"{path}: name: {source.name!r} is already {what}; choose another name")
                taken[source.name] = source
                sources.append(source)
        return cls(tuple(sources))

    def get(self, name: str) -> Source:
        for source in self.all:
            if source.name == name:
                return source
        raise SourceError(f"no source named {name!r}; known: {', '.join(s.name for s in self.all)}")

    def detect(self, path: Path) -> Source:
        """The one source that reads ``path``, from its header or first line."""
        path = Path(path)
        reading.check_file(path)
        note = path.with_name(path.name + NOTE_SUFFIX)
        if note.is_file():
            return self.get(note.read_text(encoding="utf-8").strip())
        suffix = path.suffix.lower()
        candidates = [s for s in self.all if suffix in s.read.suffixes]
        matches, near = [], []
        headers: dict[tuple, list[str]] = {}
        for source in candidates:
            read = source.read
            if not read.header:
                if read.first_line and _first_line_matches(path, source):
                    matches.append(source)
                continue
            key = (read.format_of(path), read.delimiter_of(path), read.quote, read.encoding)
            if key not in headers:
                headers[key] = reading.header_columns(path, read)
            columns = headers[key]
            try:
                engine.check_columns(path, source, columns)
                matches.append(source)
            except LandingFileError as exc:
                overlap = len(set(columns) & set(read.known_columns))
                if overlap:
                    near.append((overlap, source.name, exc))
        if len(matches) == 1:
            return matches[0]
        if matches:
            names = ", ".join(s.name for s in matches)
            raise LandingFileError(f"{path}: matches several sources ({names}); name one with --source")
        if near:
            # The source that shares most columns says what is missing or extra.
            near.sort(key=lambda n: (-n[0], n[1]))
            raise near[0][2]
        columns = next(iter(headers.values()), None)
        seen = (
            f"columns {sorted(c for c in columns if c not in LINEAGE_COLUMNS)}"
            if columns
            else "its first line"
        )
        raise LandingFileError(
            f"{path}: {seen} match no known format (sources: {', '.join(s.name for s in candidates)});"
            " write a source file (shopml sources suggest FILE) or name one with --source"
        )


def _first_line_matches(path: Path, source: Source) -> bool:
    return (
        re.fullmatch(source.read.first_line, reading.first_line(path, source.read.encoding).strip())
        is not None
    )


def adapt_file(
    path: Path, sources: Sources | None = None, source: Source | None = None
) -> engine.AdaptedFile:
    """Read one landed file with its source and convert it to canonical raw events and catalog rows."""
    path = Path(path)
    sources = sources or Sources.load()
    source = source or sources.detect(path)
    frame = reading.read_table(path, source.read)
    return engine.adapt(path, source, frame)


def write_note(path: Path, source: Source) -> Path:
    """Beside a landed file: the source it is read with."""
    note = path.with_name(path.name + NOTE_SUFFIX)
    note.write_text(source.name + "\n", encoding="utf-8")
    return note
