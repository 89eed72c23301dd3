"""The behaviour every service promises (servicekit.testing.contracts), on the catalog service."""

from typing import Any

import pytest

from servicekit.testing import Versioned
from servicekit.testing.contracts import *  # noqa: F403 - every contract is a test of this suite

PRODUCT = {"name": "Lamp", "price": "1.00", "category_id": 1}
# Requests answered from the database (method, path, JSON body): 503 while it is down.
NEED_THE_DATABASE = [
    ("POST", "/categories/", {"name": "Books"}),
    ("POST", "/products/", PRODUCT),
    ("POST", "/products/bulk", [PRODUCT]),
    ("POST", "/products/1/stock-adjustments", {"delta": -1}),
    ("POST", "/products/1/images", {"image_url": "https://img.example/a.jpg"}),
    ("DELETE", "/categories/1", None),
    ("GET", "/products/?q=lamp&sort_by=price", None),
]
# Requests about a resource that does not exist (method, path, JSON body, the 404's detail).
MISSING = [
    ("GET", "/categories/999", None, "category 999 not found"),
    ("GET", "/categories/999/products", None, "category 999 not found"),
    ("GET", "/products/999", None, "product 999 not found"),
    ("GET", "/products/999/images", None, "product 999 not found"),
    (
        "POST",
        "/products/999/images",
        {"image_url": "https://img.example/lamp.jpg"},
        "product 999 not found",
    ),
    ("POST", "/products/999/stock-adjustments", {"delta": -1}, "product 999 not found"),
]
# A method each resource does not support, and the Allow header of its 405.
UNSUPPORTED_METHODS = [
    ("PUT", "/products/1", "GET, HEAD, PATCH, DELETE"),
    ("DELETE", "/products/", "GET, HEAD, POST"),
    ("GET", "/products/1/stock-adjustments", "POST"),
    ("PUT", "/products/1/images", "GET, HEAD, POST"),
    ("POST", "/products/1/images/1", "GET, HEAD, PATCH, DELETE"),
    ("POST", "/categories/1/products", "GET, HEAD"),
]


@pytest.fixture(params=["category", "product"])
async def versioned(
    request: pytest.FixtureRequest, category: dict[str, Any], make_product: Any
) -> Versioned:
    """Each resource of the catalog that carries a version, just created."""
    if request.param == "category":
        return Versioned(f"/categories/{category['id']}", lambda n: {"name": f"Renamed {n}"})
    product = await make_product()
    return Versioned(f"/products/{product['id']}", lambda n: {"name": f"Lamp {n}"})
