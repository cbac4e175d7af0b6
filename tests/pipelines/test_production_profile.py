"""The production profile against the real PostgreSQL and Redis of this machine."""

from __future__ import annotations

import uuid

import pytest

from pipelines.commands.ingest import dagster_instance, ingest_landed, run_job

pytestmark = pytest.mark.integration


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


def _redis(url: str):
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis at {url} is not reachable: {exc}")
    return client


@pytest.fixture
def production(settings, monkeypatch):
    admin, database = _postgres_database("postgresql://postgres@127.0.0.1:5432/test")
    redis_url = "redis://127.0.0.1:6379/14"
    client = _redis(redis_url)
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


def test_ingest_and_features_run_on_postgres_and_redis(production, tiny_shop):
    instance = dagster_instance(production)
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    run_ids = ingest_landed(production, instance=instance)
    run_ids.append(run_job(production, "features_job", instance=instance))
    assert all(instance.get_run_by_id(r).is_success for r in run_ids)

    from features.config import FeatureStoreConfig, open_store
    from features.online import open_sequences

    config = FeatureStoreConfig.from_settings(production)
    sequences = open_sequences(open_store(config), config)
    user = sequences.read("u000001")
    assert user.item_ids, "the online store on Redis has the user's sequence"
    assert _redis(production.redis_url).dbsize() > 0
