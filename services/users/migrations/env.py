"""Alembic environment of the users database."""

from alembic import context

from servicekit.migrations import run_migrations
from users_service.models import Base
from users_service.settings import UsersSettings

if context.config.config_file_name and not context.config.attributes.get("database_url"):
    from logging.config import fileConfig

    fileConfig(context.config.config_file_name)

run_migrations(Base.metadata, lock_name="users", default_url=lambda: UsersSettings().migrator_url)
