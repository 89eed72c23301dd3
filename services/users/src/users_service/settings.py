"""Users service settings, from `USERS_*` environment variables."""

from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class UsersSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="USERS_")

    database_url: str = "sqlite+aiosqlite:///./var/users.db"
