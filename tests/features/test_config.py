from pathlib import Path

import pytest
from feast.infra.registry.sql import SqlRegistryConfig

from data_contracts.settings import Settings
from features.config import FeatureStoreConfig, repo_config


def test_local_environment_uses_files_under_the_root(tmp_path):
    config = FeatureStoreConfig(profile="local", root=tmp_path / "feast", project="p")
    repo = repo_config(config)
    assert repo.project == "p"
    assert repo.online_store.type == "sqlite"
    assert Path(repo.online_store.path) == (tmp_path / "feast" / "online_store.db").resolve()
    assert repo.offline_store.type == "duckdb"
    assert repo.registry.registry_type == "file"
    assert Path(repo.registry.path) == (tmp_path / "feast" / "registry.db").resolve()


def test_production_environment_uses_redis_and_a_sql_registry(tmp_path):
    config = FeatureStoreConfig(
        profile="production",
        root=tmp_path,
        redis_url="redis://:s3cret@cache.internal:6380/4",
        postgres_url="postgresql://feast@db.internal:5433/meta",
        registry_schema="feast",
    )
    repo = repo_config(config)
    assert repo.online_store.type == "redis"
    assert repo.online_store.connection_string == "cache.internal:6380,db=4,password=s3cret"
    assert isinstance(repo.registry, SqlRegistryConfig)
    assert repo.registry.path == (
        "postgresql+psycopg2://feast@db.internal:5433/meta?options=-csearch_path%3Dfeast"
    )
    assert repo.offline_store.type == "duckdb"


def test_settings_choose_the_environment_and_put_data_under_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOPML_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("SHOPML_PROFILE", "production")
    monkeypatch.setenv("SHOPML_SEQUENCE_LENGTH", "7")
    config = FeatureStoreConfig.from_settings(Settings.from_env())
    assert config.profile == "production"
    assert config.root == tmp_path / "d" / "feast"
    assert config.sequence_length == 7
    assert config.yaml_path().parent.name == "production"


def test_bad_urls_are_refused(tmp_path):
    with pytest.raises(ValueError, match="redis_url"):
        _ = FeatureStoreConfig(
            profile="production", root=tmp_path, redis_url="http://x"
        ).redis_connection_string
    with pytest.raises(ValueError, match="postgres_url"):
        _ = FeatureStoreConfig(profile="production", root=tmp_path, postgres_url="mysql://x").registry_url


def test_the_feast_cli_finds_each_object_once(tmp_path, monkeypatch):
    from feast.repo_operations import parse_repo

    repo_root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo_root)  # Feast names modules relative to the working directory
    monkeypatch.setenv("SHOPML_DATA_DIR", str(tmp_path))
    contents = parse_repo(repo_root / "features")
    # Feast adds a "__dummy" entity of its own for entity-less views.
    assert sorted(e.name for e in contents.entities if e.name != "__dummy") == ["item", "user"]
    assert sorted(v.name for v in contents.feature_views) == [
        "item_features",
        "user_recent_items",
        "user_stats",
    ]
    assert sorted(s.name for s in contents.feature_services) == ["recommender_items_v1", "recommender_v1"]
    assert sorted(s.name for s in contents.data_sources) == [
        "item_features",
        "user_history",
        "user_recent_items_push",
    ]
