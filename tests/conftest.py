"""Shared fixtures: settings pointing at a temporary data folder, a tiny synthetic shop."""

from __future__ import annotations

import shutil
import uuid

import pytest
from testdata import REPO, TINY_SHOP

from data_contracts.settings import Settings
from data_contracts.synthetic import generate_shop


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    """Settings whose data folder is a fresh temporary folder (also set in the environment).

    DAGSTER_HOME too points at a fresh instance, so that commands run by a test record their
    runs and partitions there, never in the checkout's dagster_home/.
    """
    home = tmp_path / "dagster_instance"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SHOPML_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SHOPML_WAREHOUSE", raising=False)
    monkeypatch.delenv("SHOPML_LANDING_DIR", raising=False)
    return Settings.from_env()


@pytest.fixture
def tiny_shop(settings):
    return generate_shop(TINY_SHOP, settings.landing_dir)


def _postgres_database(base_url: str):
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(base_url, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {base_url} is not reachable: {exc}")
    admin.autocommit = True
    name = f"shopml_test_{uuid.uuid4().hex[:8]}"
    admin.cursor().execute(f"CREATE DATABASE {name}")
    return admin, name


def redis_client(url: str):
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis at {url} is not reachable: {exc}")
    return client


@pytest.fixture
def production(settings, monkeypatch):
    """Settings of the production profile on a fresh PostgreSQL database and Redis db 14."""
    admin, database = _postgres_database("postgresql://postgres@127.0.0.1:5432/test")
    redis_url = "redis://127.0.0.1:6379/14"
    client = redis_client(redis_url)
    client.flushdb()
    monkeypatch.setenv("SHOPML_PROFILE", "production")
    monkeypatch.setenv("SHOPML_POSTGRES_URL", f"postgresql://postgres@127.0.0.1:5432/{database}")
    monkeypatch.setenv("SHOPML_REDIS_URL", redis_url)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    from data_contracts.settings import Settings

    yield Settings.from_env()
    client.flushdb()
    admin.cursor().execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    admin.close()
