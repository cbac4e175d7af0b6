"""Item titles, categories, stock and popularity, read once from the warehouse at start-up.

A service must not hold the DuckDB file lock (the pipeline writes the warehouse), so the
tables are read through a read-only connection that is closed right away, and kept in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from data_contracts.schemas import in_category
from data_contracts.warehouse import connect

log = logging.getLogger(__name__)

CATALOG_SQL = """
SELECT c.item_id, c.title, c.category, c.in_stock, coalesce(s.popularity, 0) AS popularity
FROM catalog c LEFT JOIN item_stats s USING (item_id)
ORDER BY popularity DESC, c.item_id
"""


@dataclass
class Item:
    title: str | None
    category: str | None
    in_stock: bool
    popularity: int


@dataclass
class Catalog:
    """The current catalog, and its item ids ordered by popularity (most popular first)."""

    items: dict[str, Item] = field(default_factory=dict)
    by_popularity: list[str] = field(default_factory=list)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple]) -> Catalog:
        catalog = cls()
        for item_id, title, category, in_stock, popularity in rows:
            catalog.items[item_id] = Item(title, category, bool(in_stock), int(popularity))
            catalog.by_popularity.append(item_id)
        return catalog

    @classmethod
    def load(cls, warehouse_path: Path | str) -> Catalog:
        """Read the warehouse; an absent or unready warehouse gives an empty catalog (logged)."""
        if not Path(warehouse_path).exists():
            log.warning("no warehouse at %s: serving without titles or popularity", warehouse_path)
            return cls()
        try:
            with connect(warehouse_path, read_only=True) as conn:
                rows = conn.execute(CATALOG_SQL).fetchall()
        except duckdb.Error as e:
            log.warning(
                "cannot read catalog and item_stats from %s (%s): serving without them", warehouse_path, e
            )
            return cls()
        return cls.from_rows(rows)

    def __len__(self) -> int:
        return len(self.items)

    def available(self, item_id: str, category: str | None = None, in_stock_only: bool = True) -> bool:
        item = self.items.get(item_id)
        if item is None:
            return False
        if in_stock_only and not item.in_stock:
            return False
        return category is None or in_category(item.category, category)

    def popular(
        self, category: str | None = None, in_stock_only: bool = True, exclude: frozenset[str] = frozenset()
    ) -> Iterator[str]:
        """Items in popularity order that pass the filters."""
        for item_id in self.by_popularity:
            if item_id not in exclude and self.available(item_id, category, in_stock_only):
                yield item_id
