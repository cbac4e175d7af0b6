"""Which Feast environment to open, and where its generated data lives.

The environment is picked by configuration only: ``profile`` selects one of the
``environments/<profile>/feature_store.yaml`` files, whose ``${SHOPML_FEAST_*}`` values are
filled from the shopml settings. Nothing generated (registry, online store, offline Parquet)
lives in the repository: everything goes under ``root``, by default ``<data_dir>/feast``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit

import yaml
from feast import FeatureStore, RepoConfig

from data_contracts.settings import Settings

ENVIRONMENTS = Path(__file__).parent / "environments"


@dataclass(frozen=True)
class FeatureStoreConfig:
    """Everything the feature store needs to know; build with ``from_settings``."""

    # "local": DuckDB offline, SQLite online, file registry; "production": Redis online,
    # SQL registry on PostgreSQL.
    profile: Literal["local", "production"]
    # Folder for generated Feast data: offline Parquet, file registry, SQLite online store.
    root: Path
    # Items kept per user in the online sequence (same N as the warehouse's user_sequences).
    sequence_length: int = 50
    # Feast project: namespaces registry rows, SQLite tables and Redis keys.
    project: str = "shopml"
    redis_url: str = "redis://127.0.0.1:6379/0"
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/test"
    # PostgreSQL schema holding the SQL registry tables (None: the server's search_path).
    registry_schema: str | None = None
    # How long an append waits for the per-user lock before failing, in seconds.
    lock_timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> FeatureStoreConfig:
        config = cls(
            profile=settings.profile,
            root=settings.data_dir / "feast",
            sequence_length=settings.sequence_length,
            redis_url=settings.redis_url,
            postgres_url=settings.postgres_url,
        )
        return replace(config, **overrides)

    @property
    def offline_dir(self) -> Path:
        return self.root.resolve() / "offline"

    @property
    def sqlite_path(self) -> Path:
        return self.root.resolve() / "online_store.db"

    @property
    def redis_connection_string(self) -> str:
        """Feast's ``host:port,db=N,password=...`` form of ``redis_url``."""
        url = urlsplit(self.redis_url)
        if url.scheme not in ("redis", "rediss"):
            raise ValueError(f"redis_url must start with redis:// or rediss://, not {self.redis_url!r}")
        parts = [f"{url.hostname or '127.0.0.1'}:{url.port or 6379}"]
        db = url.path.lstrip("/")
        parts.append(f"db={int(db) if db else 0}")
        if url.password:
            parts.append(f"password={unquote(url.password)}")
        if url.username:
            parts.append(f"username={unquote(url.username)}")
        if url.scheme == "rediss":
            parts.append("ssl=true")
        return ",".join(parts)

    @property
    def registry_url(self) -> str:
        """SQLAlchemy URL of the SQL registry (psycopg2 driver, the one the project pins)."""
        url = self.postgres_url
        for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                url = "postgresql+psycopg2://" + url[len(prefix) :]
                break
        else:
            raise ValueError(f"postgres_url must be a postgresql:// URL, not {self.postgres_url!r}")
        if self.registry_schema:
            sep = "&" if "?" in url else "?"
            url += f"{sep}options={quote(f'-csearch_path={self.registry_schema}')}"
        return url

    def yaml_path(self) -> Path:
        return ENVIRONMENTS / self.profile / "feature_store.yaml"

    def variables(self) -> dict[str, str]:
        return {
            "SHOPML_FEAST_PROJECT": self.project,
            "SHOPML_FEAST_ROOT": str(self.root.resolve()),
            "SHOPML_FEAST_REDIS": self.redis_connection_string,
            "SHOPML_FEAST_REGISTRY_URL": self.registry_url,
        }


def repo_config(config: FeatureStoreConfig) -> RepoConfig:
    """The environment's feature_store.yaml with its ``${...}`` values filled in."""
    text = config.yaml_path().read_text()
    # substitute (not safe_substitute): an unknown name in the yaml is a mistake, say so.
    raw = yaml.safe_load(string.Template(text).substitute(config.variables()))
    repo = RepoConfig(**raw)
    repo.repo_path = config.root.resolve()
    return repo


def open_store(config: FeatureStoreConfig) -> FeatureStore:
    """A FeatureStore for the configured environment (creates the data folder)."""
    config.root.mkdir(parents=True, exist_ok=True)
    if config.profile == "production" and config.registry_schema:
        _ensure_schema(config)
    return FeatureStore(repo_path=str(config.root.resolve()), config=repo_config(config))


def _ensure_schema(config: FeatureStoreConfig) -> None:
    import psycopg2

    with psycopg2.connect(config.postgres_url) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{config.registry_schema}"')
