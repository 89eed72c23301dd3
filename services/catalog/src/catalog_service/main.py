"""The catalog service application: `uvicorn catalog_service.main:create_app --factory`."""

from fastapi import FastAPI

from catalog_service.models import IDEMPOTENCY_KEYS
from catalog_service.router import categories_router, products_router
from catalog_service.settings import CatalogSettings
from servicekit.app import create_service_app


def create_app(settings: CatalogSettings | None = None) -> FastAPI:
    """Build the catalog app from settings (by default, from `CATALOG_*` environment variables)."""
    return create_service_app(
        name="catalog",
        version="0.1.0",
        description="Categories, products with images, bulk import and stock adjustments.",
        settings=settings or CatalogSettings(),
        routers=[categories_router, products_router],
        idempotency_keys=IDEMPOTENCY_KEYS,
    )
