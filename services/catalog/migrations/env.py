"""Alembic environment of the catalog database."""

from alembic import context

from catalog_service.models import Base
from catalog_service.settings import CatalogSettings
from servicekit.migrations import run_migrations

if context.config.config_file_name and not context.config.attributes.get("database_url"):
    from logging.config import fileConfig

    fileConfig(context.config.config_file_name)

run_migrations(
    Base.metadata, lock_name="catalog", default_url=lambda: CatalogSettings().migrator_url
)
