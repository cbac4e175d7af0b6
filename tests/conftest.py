"""Shared fixtures: settings pointing at a temporary data folder, a tiny synthetic shop."""

from __future__ import annotations

import pytest
from testdata import TINY_SHOP

from data_contracts.settings import Settings
from data_contracts.synthetic import generate_shop


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    """Settings whose data folder is a fresh temporary folder (also set in the environment)."""
    monkeypatch.setenv("SHOPML_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SHOPML_WAREHOUSE", raising=False)
    monkeypatch.delenv("SHOPML_LANDING_DIR", raising=False)
    return Settings.from_env()


@pytest.fixture
def tiny_shop(settings):
    return generate_shop(TINY_SHOP, settings.landing_dir)
