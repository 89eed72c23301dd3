"""Catalog service settings, from `CATALOG_*` environment variables."""

from pydantic_settings import SettingsConfigDict

from servicekit.database import ServiceSettings


class CatalogSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CATALOG_")

    database_url: str = "sqlite+aiosqlite:///./var/catalog.db"
