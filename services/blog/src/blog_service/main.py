"""The blog service application: `uvicorn blog_service.main:create_app --factory`."""

from fastapi import FastAPI

from blog_service.events import follow_users_feed
from blog_service.models import IDEMPOTENCY_KEYS
from blog_service.router import comments_router, posts_router, tags_router
from blog_service.settings import BlogSettings
from servicekit.app import create_service_app


def create_app(settings: BlogSettings | None = None) -> FastAPI:
    """Build the blog app from settings (by default, from `BLOG_*` environment variables).

    It follows users' event feed in the background unless `consume_events` is off.
    """
    settings = settings or BlogSettings()
    return create_service_app(
        name="blog",
        version="0.1.0",
        description="Posts with tags, comments on them, and batch reads of authors' newest posts.",
        settings=settings,
        routers=[posts_router, comments_router, tags_router],
        background=[follow_users_feed] if settings.consume_events else [],
        idempotency_keys=IDEMPOTENCY_KEYS,
    )
