"""One OpenAPI document for the whole system: the gateway's own views and every proxied route.

The proxied routes' operations and schemas come from the services' own documents, fetched at
run time, so the gateway never restates an API it does not own.
"""

import asyncio
import copy
import time
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from gateway_service.downstream import Downstream
from gateway_service.proxy import ProxyRoute, downstream_of
from servicekit.errors import ServiceError

_SCHEMA_REF = "#/components/schemas/"


def _renamed_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                _SCHEMA_REF + renames.get(value[len(_SCHEMA_REF) :], value[len(_SCHEMA_REF) :])
                if key == "$ref" and isinstance(value, str) and value.startswith(_SCHEMA_REF)
                else _renamed_refs(value, renames)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_renamed_refs(item, renames) for item in node]
    return node


def merge_documents(
    own: dict[str, Any],
    services: Mapping[str, dict[str, Any] | None],
    routes: tuple[ProxyRoute, ...],
) -> dict[str, Any]:
    """The gateway's document plus each proxied operation from its service's document.

    A schema name two services use for different shapes is prefixed with the service's name.
    """
    merged = copy.deepcopy(own)
    paths: dict[str, Any] = merged.setdefault("paths", {})
    schemas: dict[str, Any] = merged.setdefault("components", {}).setdefault("schemas", {})
    missing = []
    for service, document in services.items():
        if document is None:
            missing.append(service)
            continue
        theirs: dict[str, Any] = document.get("components", {}).get("schemas", {})
        renames = {
            name: f"{service.capitalize()}{name}"
            for name, schema in theirs.items()
            if name in schemas and schemas[name] != schema
        }
        for name, schema in theirs.items():
            schemas.setdefault(renames.get(name, name), _renamed_refs(schema, renames))
        for route in routes:
            if route.service != service:
                continue
            operations = document.get("paths", {}).get(route.path_format, {})
            target = paths.setdefault(route.path_format, {})
            for method in sorted(route.methods):
                if (operation := operations.get(method.lower())) is not None:
                    target[method.lower()] = _renamed_refs(operation, renames)
    if missing:
        merged["info"]["description"] = (
            merged["info"].get("description", "")
            + f"\n\nNot described here because they did not answer: {', '.join(missing)}."
        )
    return merged


class SystemDocument:
    """The merged document, rebuilt when older than `max_age` or when a service was missing."""

    def __init__(
        self, own: Callable[[], dict[str, Any]], routes: tuple[ProxyRoute, ...], max_age: float
    ) -> None:
        self._own = own
        self._routes = routes
        self._max_age = max_age
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def get(self, downstream: Downstream) -> dict[str, Any]:
        async with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < self._max_age:
                return self._cached[1]
            names = sorted({route.service for route in self._routes})
            documents = await asyncio.gather(*(_document_of(downstream, name) for name in names))
            merged = merge_documents(
                self._own(), dict(zip(names, documents, strict=True)), self._routes
            )
            if all(document is not None for document in documents):
                self._cached = (time.monotonic(), merged)
            return merged


async def _document_of(downstream: Downstream, service: str) -> dict[str, Any] | None:
    try:
        answer = await downstream.request(service, "GET", "/openapi.json")
    except ServiceError:
        return None
    document: dict[str, Any] | None = answer.json() if answer.status_code == 200 else None
    return document


def add_documentation_routes(app: FastAPI, document: SystemDocument) -> None:
    """Serve the merged document at /openapi.json and Swagger UI for it at /docs."""

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(await document.get(downstream_of(request)))

    async def swagger_ui(_request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    app.router.add_route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False)
    app.router.add_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
