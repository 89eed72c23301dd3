"""The gateway's OpenAPI document: its own views plus every proxied service operation."""

from typing import Any

import httpx

from gateway_service.openapi import DocumentedBy, merge_documents
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
    ProxyRoute("users", "/users/{user_id:int}", {"GET": "anyone"}),
    ProxyRoute("blog", "/posts/", {"GET": "anyone"}),
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


def test_a_composed_operation_takes_the_parameters_body_and_answers_of_its_service() -> None:
    path_id = {"name": "user_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    own = _document(
        {
            "/users/{user_id}/posts": {
                "post": {
                    "summary": "Create a post for the user",
                    "parameters": [path_id],
                    "requestBody": {"content": {"application/json": {"schema": {}}}},
                    "responses": {"201": {"description": "untyped"}, "404": {"description": "no"}},
                }
            }
        },
        {},
    )
    create = {
        "summary": "Create Post",
        "parameters": [{"name": "dry_run", "in": "query", "schema": {"type": "boolean"}}],
        "requestBody": {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/New"}}}
        },
        **_operation("Post"),
        "responses": {**_operation("Post")["responses"], "422": {"description": "invalid"}},
    }
    create["responses"]["201"] = create["responses"].pop("200")
    new = {
        "type": "object",
        "title": "New",
        "properties": {"title": {"type": "string"}, "author_id": {"type": "integer"}},
        "required": ["title", "author_id"],
    }
    blog = _document({"/posts/": {"post": create}}, {"New": new, "Post": {"type": "object"}})
    documented = DocumentedBy("post", "/users/{user_id}/posts", "blog", "/posts/", {"author_id"})

    merged = merge_documents(own, {"blog": blog}, (), (documented,))

    operation = merged["paths"]["/users/{user_id}/posts"]["post"]
    assert operation["summary"] == "Create a post for the user"
    assert [p["name"] for p in operation["parameters"]] == ["user_id", "dry_run"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "type": "object",
        "properties": {"title": {"type": "string"}},
        "required": ["title"],
    }
    assert operation["responses"] == {
        "201": create["responses"]["201"],
        "404": {"description": "no"},
        "422": {"description": "invalid"},
    }


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
    proxied = paths["/users/{user_id}"]["get"]["responses"]
    assert {"200", "404", "502", "503", "504"} <= set(proxied)
    assert proxied["504"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert "/users-with-posts" in paths
    assert "/users/search" in paths
    assert "UserRead" in response.json()["components"]["schemas"]
    assert docs.status_code == 200
    assert "/openapi.json" in docs.text


async def test_composed_views_are_described_with_the_blog_parameters_and_bodies_they_pass_on(
    gateway: httpx.AsyncClient,
) -> None:
    paths = (await gateway.get("/openapi.json")).json()["paths"]

    posts_of_user = paths["/users/{user_id}/posts"]
    query = {p["name"] for p in posts_of_user["get"]["parameters"] if p["in"] == "query"}
    body = posts_of_user["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert query == {"tag", "published", "q", "sort_by", "order", "skip", "limit", "after"}
    assert set(body["properties"]) == {"title", "content", "published", "tags"}
    assert posts_of_user["get"]["responses"]["200"]["content"]["application/json"]["schema"][
        "items"
    ] == {"$ref": "#/components/schemas/PostRead"}
    for path in "/users/{user_id}/posts", "/posts/", "/posts/{post_id}/comments":
        assert {"201", "404", "422", "503"} <= set(paths[path]["post"]["responses"]), path
    assert paths["/posts/"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PostCreate"
    }


# Service operations a client does not call directly: probes, and the removal of a user's blog
# content, which only the gateway's user deletion performs.
INTERNAL_OPERATIONS = {
    ("/posts/", "delete"),
    ("/health/live", "get"),
    ("/health/ready", "get"),
    ("/events", "get"),
    ("/events/head", "get"),
}


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
