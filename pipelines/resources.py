"""Resources: the environment is chosen here, once, from the settings (SHOPML_* variables)."""

from __future__ import annotations

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
    """The DuckDB warehouse; unlike the stock resource it closes its connection on failure too,
    so a failed run in a long-lived process (the CLI, tests) does not keep the file locked."""

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = warehouse.connect(self.database)
        try:
            yield conn
        finally:
            conn.close()


def build_resources(settings: Settings | None = None) -> dict:
    settings = settings or Settings.from_env()
    return {
        "settings": ShopSettings(),
        "warehouse_db": WarehouseResource(database=str(settings.warehouse_path)),
    }
