"""The gateway's OpenAPI document: its own views plus every proxied service operation."""

from typing import Any

import httpx

from gateway_service.openapi import merge_documents
from gateway_service.proxy import ProxyRoute
from servicekit.testing import ServiceProcess


def _document(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "t"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _operation(schema: str) -> dict[str, Any]:
    return {
        "responses": {
            "200": {
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}
                }
            }
        }
    }


ROUTES = (
    ProxyRoute("users", "/users/{user_id:int}", frozenset({"GET"})),
    ProxyRoute("blog", "/posts/", frozenset({"GET"})),
)


def test_proxied_operations_and_their_schemas_are_merged_in() -> None:
    users = _document(
        {"/users/{user_id}": {"get": _operation("UserRead"), "delete": _operation("UserRead")}},
        {"UserRead": {"type": "object"}},
    )

    merged = merge_documents(_document({}, {}), {"users": users}, ROUTES[:1])

    assert merged["paths"] == {"/users/{user_id}": {"get": _operation("UserRead")}}
    assert merged["components"]["schemas"] == {"UserRead": {"type": "object"}}


def test_a_schema_name_two_services_use_differently_is_prefixed_with_the_service() -> None:
    users = _document({"/users/{user_id}": {"get": _operation("Page")}}, {"Page": {"title": "u"}})
    blog = _document({"/posts/": {"get": _operation("Page")}}, {"Page": {"title": "b"}})

    merged = merge_documents(_document({}, {}), {"users": users, "blog": blog}, ROUTES)

    assert merged["components"]["schemas"] == {"Page": {"title": "u"}, "BlogPage": {"title": "b"}}
    assert merged["paths"]["/posts/"]["get"] == _operation("BlogPage")


def test_a_service_that_did_not_answer_is_named_in_the_description() -> None:
    merged = merge_documents(_document({}, {}), {"users": None}, ROUTES[:1])

    assert merged["paths"] == {}
    assert "did not answer: users" in merged["info"]["description"]


async def test_the_served_document_describes_composed_and_proxied_routes(
    gateway: httpx.AsyncClient,
) -> None:
    response = await gateway.get("/openapi.json")
    docs = await gateway.get("/docs")

    paths = response.json()["paths"]
    assert set(paths["/users/{user_id}"]) == {"get", "patch", "delete"}
    assert "/users-with-posts" in paths
    assert "/users/search" in paths
    assert "UserRead" in response.json()["components"]["schemas"]
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text


# Service operations a client does not call directly: probes, and the removal of a user's blog
# content, which only the gateway's user deletion performs.
INTERNAL_OPERATIONS = {("/posts/", "delete"), ("/health/live", "get"), ("/health/ready", "get")}


async def test_every_service_operation_is_reachable_through_the_gateway(
    gateway: httpx.AsyncClient, services: dict[str, ServiceProcess]
) -> None:
    gateway_paths = (await gateway.get("/openapi.json")).json()["paths"]
    missing = []
    async with httpx.AsyncClient() as direct:
        for name, process in services.items():
            service_paths = (await direct.get(f"{process.url}/openapi.json")).json()["paths"]
            missing += [
                (name, method, path)
                for path, operations in service_paths.items()
                for method in operations
                if (path, method) not in INTERNAL_OPERATIONS
                and method not in gateway_paths.get(path, {})
            ]

    assert missing == []
