"""The catalog service under test; servicekit's plugin builds the database, app and client on it."""

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalog_service.main import create_app
from catalog_service.models import Base
from catalog_service.settings import CatalogSettings
from servicekit.testing import ServiceUnderTest, TokenIssuer, app_under_test

Body = dict[str, Any]
MakeCategory = Callable[..., Awaitable[Body]]
MakeProduct = Callable[..., Awaitable[Body]]


@pytest.fixture(scope="session")
def service(token_issuer: TokenIssuer) -> ServiceUnderTest:
    return ServiceUnderTest(
        name="catalog",
        create_app=app_under_test(create_app, CatalogSettings, token_issuer),
        metadata=Base.metadata,
        alembic_ini=Path(__file__).parents[1] / "alembic.ini",
        read_path="/products/1",
        read_route="/products/{product_id}",
        create_path="/categories/",
        create_body=lambda n: {"name": f"Category {n}"},
        change_body=lambda n: {"name": f"Renamed {n}"},
    )


async def _created(response: httpx.Response) -> Body:
    assert response.status_code == 201, response.text
    body: Body = response.json()
    return body


@pytest.fixture
def make_category(client: httpx.AsyncClient) -> MakeCategory:
    """Creates a category over the API: `await make_category(name="Books")`."""

    async def make(name: str = "Books", **fields: Any) -> Body:
        return await _created(await client.post("/categories/", json={"name": name, **fields}))

    return make


@pytest.fixture
async def category(make_category: MakeCategory) -> Body:
    """A category the products made by `make_product` belong to unless told otherwise."""
    return await make_category()


@pytest.fixture
def make_product(client: httpx.AsyncClient, category: Body) -> MakeProduct:
    """Creates a product over the API: `await make_product(name="Lamp", price="19.90")`."""

    async def make(name: str = "Lamp", **fields: Any) -> Body:
        body = {"name": name, "price": "10.00", "category_id": category["id"], **fields}
        return await _created(await client.post("/products/", json=body))

    return make
