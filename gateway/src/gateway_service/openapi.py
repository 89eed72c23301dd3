"""One OpenAPI document for the whole system: the gateway's own views and every proxied route.

The proxied routes' operations and schemas come from the services' own documents, fetched at
run time, so the gateway never restates an API it does not own. So do the parameters, bodies
and answers of the composed views that pass a request on to a service (`DocumentedBy`).
"""

import asyncio
import copy
import time
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from gateway_service.downstream import Downstream
from gateway_service.proxy import ProxyRoute, downstream_of
from servicekit.errors import ServiceError

_SCHEMA_REF = "#/components/schemas/"


@dataclass(frozen=True)
class DocumentedBy:
    """A composed operation described by the service operation it passes the request on to.

    The gateway's own entry keeps its summary, its path parameters and the failures it adds (an
    unknown user's 404, a service's 503). The service's gives the rest: its other parameters,
    its body and its answers, less `set_by_gateway`, the parameters and body fields that the
    gateway fills in itself.
    """

    method: str  # lower case, as in the documents
    path: str
    service: str
    service_path: str
    set_by_gateway: Set[str] = frozenset()


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


def _body_without(body: dict[str, Any], fields: Set[str], schemas: Mapping[str, Any]) -> Any:
    """A request body whose JSON object schema lacks `fields` (inlined from its component)."""
    body = copy.deepcopy(body)
    for media in body.get("content", {}).values():
        schema = media.get("schema", {})
        ref = schema.get("$ref", "")
        if ref.startswith(_SCHEMA_REF):
            schema = copy.deepcopy(schemas[ref[len(_SCHEMA_REF) :]])
        properties = schema.get("properties", {})
        schema["properties"] = {k: v for k, v in properties.items() if k not in fields}
        if "required" in schema:
            schema["required"] = [name for name in schema["required"] if name not in fields]
        schema.pop("title", None)
        media["schema"] = schema
    return body


def _derived_operation(
    own: dict[str, Any],
    theirs: dict[str, Any],
    documented: DocumentedBy,
    schemas: Mapping[str, Any],
) -> dict[str, Any]:
    fixed = documented.set_by_gateway
    operation = copy.deepcopy(own)
    parameters = [p for p in own.get("parameters", []) if p["in"] == "path"]
    named = {p["name"] for p in parameters} | fixed
    parameters += [
        p for p in theirs.get("parameters", []) if p["in"] != "path" and p["name"] not in named
    ]
    if parameters:
        operation["parameters"] = parameters
    if "requestBody" in theirs:
        body = theirs["requestBody"]
        operation["requestBody"] = _body_without(body, fixed, schemas) if fixed else body
    # The service's answers, but the gateway's own description of each failure it adds.
    answers = {**theirs.get("responses", {})}
    answers.update({code: a for code, a in own.get("responses", {}).items() if code[0] != "2"})
    operation["responses"] = dict(sorted(answers.items()))
    return operation


# What the gateway itself may answer to any request it passes on (see Downstream.request).
_GATEWAY_FAILURES = {
    "502": "The service failed, or broke the connection once it had the request (a write may "
    "have been applied: repeat it with the same Idempotency-Key)",
    "503": "The service, or its database, is unavailable, or the gateway holds calls to it back "
    "for now (its circuit is open, or it has too many calls in flight); the request did not "
    "reach the service unless the service itself answered 503. Retry-After says when to retry",
    "504": "The service did not answer in time (a write may have been applied: repeat it with "
    "the same Idempotency-Key)",
}


def add_gateway_failures(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the gateway's own failures among every operation's answers."""
    schemas = document.get("components", {}).get("schemas", {})
    body = {"application/json": {"schema": {"$ref": f"{_SCHEMA_REF}ErrorBody"}}}
    content = {"content": body} if "ErrorBody" in schemas else {}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            answers = operation.setdefault("responses", {})
            for code, description in _GATEWAY_FAILURES.items():
                answers.setdefault(code, {"description": description, **content})
            operation["responses"] = dict(sorted(answers.items()))
    return document


def merge_documents(
    own: dict[str, Any],
    services: Mapping[str, dict[str, Any] | None],
    routes: tuple[ProxyRoute, ...],
    documented_by: tuple[DocumentedBy, ...] = (),
) -> dict[str, Any]:
    """The gateway's document plus each proxied operation from its service's document.

    A schema name two services use for different shapes is prefixed with the service's name.
    A composed operation `documented_by` a service's takes its parameters, body and answers.
    """
    merged = copy.deepcopy(own)
    paths: dict[str, Any] = merged.setdefault("paths", {})
    components: dict[str, Any] = merged.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
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
        # Every service names the same scheme: the users service's bearer tokens.
        for name, scheme in document.get("components", {}).get("securitySchemes", {}).items():
            components.setdefault("securitySchemes", {}).setdefault(name, scheme)
        for route in routes:
            if route.service != service:
                continue
            operations = document.get("paths", {}).get(route.path_format, {})
            target = paths.setdefault(route.path_format, {})
            for method in sorted(route.methods):
                if (operation := operations.get(method.lower())) is not None:
                    target[method.lower()] = _renamed_refs(operation, renames)
        for documented in documented_by:
            if documented.service != service:
                continue
            service_operations = document.get("paths", {}).get(documented.service_path, {})
            theirs_op = service_operations.get(documented.method)
            own_op = paths.get(documented.path, {}).get(documented.method)
            if theirs_op is not None and own_op is not None:
                paths[documented.path][documented.method] = _derived_operation(
                    own_op, _renamed_refs(theirs_op, renames), documented, schemas
                )
    if missing:
        merged["info"]["description"] = (
            merged["info"].get("description", "")
            + f"\n\nNot described here because they did not answer: {', '.join(missing)}."
        )
    return merged


class SystemDocument:
    """The merged document, rebuilt when older than `max_age` or when a service was missing."""

    def __init__(
        self,
        own: Callable[[], dict[str, Any]],
        routes: tuple[ProxyRoute, ...],
        max_age: float,
        documented_by: tuple[DocumentedBy, ...] = (),
    ) -> None:
        self._own = own
        self._routes = routes
        self._documented_by = documented_by
        self._max_age = max_age
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def get(self, downstream: Downstream) -> dict[str, Any]:
        async with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < self._max_age:
                return self._cached[1]
            names = sorted(
                {route.service for route in self._routes}
                | {documented.service for documented in self._documented_by}
            )
            documents = await asyncio.gather(*(_document_of(downstream, name) for name in names))
            merged = add_gateway_failures(
                merge_documents(
                    self._own(),
                    dict(zip(names, documents, strict=True)),
                    self._routes,
                    self._documented_by,
                )
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
