"""Fixtures of the search tests: a small synthetic catalog and a tiny encoder trained on it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from data_contracts.synthetic import ShopConfig, _items  # noqa: E402
from search.encoder import Encoder  # noqa: E402
from search.index import build_index, catalog_items  # noqa: E402
from training.support.tiny import tiny_encoder  # noqa: E402


@pytest.fixture(scope="session")
def catalog() -> pl.DataFrame:
    items = _items(ShopConfig(items=300), np.random.default_rng(3)).drop("top")
    extra = pl.DataFrame(
        {
            "item_id": ["tent-1", "tent-2"],
            "title": ["Ridge Dome Tent", "Ridge Tunnel Tent"],
            "description": ["A two-person dome tent for camping.", "A four-person tunnel tent."],
            "category": ["Sports > Camping", "Sports > Camping"],
            "brand": ["Ridge", "Ridge"],
            "price": [120.0, 240.0],
            "currency": ["USD", "USD"],
            "in_stock": [True, False],
        }
    )
    return pl.concat([items, extra], how="vertical_relaxed")


@pytest.fixture(scope="session")
def tiny_encoder_spec(tmp_path_factory, catalog) -> str:
    texts = catalog_items(catalog)["text"].to_list()
    return str(tiny_encoder(tmp_path_factory.mktemp("search-encoder"), texts))


@pytest.fixture(scope="session")
def encoder(tiny_encoder_spec) -> Encoder:
    # PyTorch here (no export per test session); tests/search/test_encoder.py covers ONNX.
    return Encoder(tiny_encoder_spec, backend="torch")


@pytest.fixture
def index_root(tmp_path, catalog, encoder) -> Path:
    build_index(catalog, tmp_path / "search", encoder)
    return tmp_path / "search"
