"""Resources: the environment is chosen here, once, from the settings (SHOPML_* variables)."""

from __future__ import annotations

from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource

from data_contracts.settings import Settings


class ShopSettings(ConfigurableResource):
    """The platform's settings, as a resource assets can ask for."""

    def get(self) -> Settings:
        return Settings.from_env()


def build_resources(settings: Settings | None = None) -> dict:
    settings = settings or Settings.from_env()
    return {
        "settings": ShopSettings(),
        "warehouse_db": DuckDBResource(database=str(settings.warehouse_path)),
    }
