"""shopml summary: the warehouse's tables, row counts and comments."""

from __future__ import annotations

import argparse

from data_contracts import warehouse
from data_contracts.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def format_summary(settings: Settings) -> str:
    if not settings.warehouse_path.exists():
        return f"no warehouse at {settings.warehouse_path}; run `shopml run` or `shopml ingest` first"
    conn = warehouse.connect(settings.warehouse_path, read_only=True)
    try:
        rows = warehouse.summary(conn)
    finally:
        conn.close()
    width = max(len(name) for name, _, _ in rows) if rows else 5
    lines = [f"warehouse {settings.warehouse_path}", f"{'table':<{width}}  {'rows':>10}  comment"]
    lines += [f"{name:<{width}}  {count:>10,}  {comment}" for name, count, comment in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print(format_summary(Settings.from_env()))
    return 0
