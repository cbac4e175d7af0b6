"""Resources: the environment is chosen here, once, from the settings (SHOPML_* variables)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource

from data_contracts import warehouse
from data_contracts.settings import Settings


class ShopSettings(ConfigurableResource):
    """The platform's settings, as a resource assets can ask for."""

    def get(self) -> Settings:
        return Settings.from_env()


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse.

    DuckDB lets one process write a file at a time: a second run waits for the lock (up to
    ``lock_timeout_s``). Unlike the stock resource, the connection is closed on failure too,
    so a failed run in a long-lived process (the CLI, tests) does not keep the file locked.
    """

    lock_timeout_s: float = 600.0

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                conn = warehouse.connect(self.database)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        try:
            yield conn
        finally:
            conn.close()


class FeatureStoreResource(ConfigurableResource):
    """The Feast feature store of the configured profile (local: SQLite; production: Redis)."""

    def config(self):
        from features.config import FeatureStoreConfig

        return FeatureStoreConfig.from_settings(Settings.from_env())

    def open(self):
        from features.config import open_store

        return open_store(self.config())


def build_resources(settings: Settings | None = None) -> dict:
    settings = settings or Settings.from_env()
    return {
        "settings": ShopSettings(),
        "warehouse_db": WarehouseResource(database=str(settings.warehouse_path)),
        "feature_store": FeatureStoreResource(),
    }
