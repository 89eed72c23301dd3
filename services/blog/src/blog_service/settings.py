"""Blog service settings, from `BLOG_*` environment variables."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit.database import ServiceSettings
from servicekit.settings import EventFeedSettings


class BlogSettings(ServiceSettings, EventFeedSettings):
    model_config = SettingsConfigDict(env_prefix="BLOG_")

    database_url: str = "sqlite+aiosqlite:///./var/blog.db"

    # Users' event feed (blog_service.events): where it is, whether to follow it (off only for
    # tests of blog alone), how long each request waits for news (a server waits for a request
    # in flight before it stops: short waits keep users quick to stop), and what to do with an
    # event that keeps failing.
    events_url: str = "http://127.0.0.1:8001/events"
    consume_events: bool = True
    events_wait: float = Field(default=5.0, ge=0, le=30, description="Seconds.")
    events_attempts: int = Field(default=5, ge=1, description="Tries before an event is parked.")
    events_parked_retry_interval: float = Field(default=60.0, gt=0, description="Seconds.")
