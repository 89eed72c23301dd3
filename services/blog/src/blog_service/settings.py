"""Blog service settings, from `BLOG_*` environment variables."""

from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class BlogSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="BLOG_")

    database_url: str = "sqlite+aiosqlite:///./var/blog.db"
