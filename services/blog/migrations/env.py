"""Alembic environment of the blog database."""

from alembic import context

from blog_service.models import Base
from blog_service.settings import BlogSettings
from servicekit.migrations import run_migrations

if context.config.config_file_name and not context.config.attributes.get("database_url"):
    from logging.config import fileConfig

    fileConfig(context.config.config_file_name)

run_migrations(Base.metadata, lock_name="blog", default_url=lambda: BlogSettings().migrator_url)
