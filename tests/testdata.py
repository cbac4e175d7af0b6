"""Paths to test data and a tiny shop config, importable from any test module."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from data_contracts.synthetic import ShopConfig

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "data"
DATASETS = REPO.parent / "shared" / "datasets"

TINY_SHOP = ShopConfig(
    users=60, items=40, days=3, events_per_day=400, start=date(2026, 1, 5), seed=3, bad_share=0.03
)


def dataset(relative: str) -> Path:
    """A file of the shared real data sets; skips the test when it is not on this machine."""
    path = DATASETS / relative
    if not path.exists():
        pytest.skip(f"real data set {path} is not on this machine (only the shared dev folder has it)")
    return path
