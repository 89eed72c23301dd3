"""Forwarding to the owning service by an explicit route table, and relaying its answer."""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from fastapi import FastAPI, Request, Response

from gateway_service.downstream import Downstream
from gateway_service.errors import BadGateway

# Headers that mean something end to end; hop-by-hop and server-specific ones stay behind.
# Authorization goes on unchanged: every service verifies the caller's token itself.
FORWARDED_REQUEST_HEADERS = frozenset(
    {b"accept", b"authorization", b"content-type", b"if-match", b"if-none-match"}
)
RELAYED_RESPONSE_HEADERS = frozenset(
    {b"content-type", b"etag", b"location", b"link", b"allow", b"retry-after", b"cache-control"}
)
_URL_HEADERS = frozenset({b"location", b"link"})
_CONVERTOR = re.compile(r"{(\w+):\w+}")


@dataclass(frozen=True)
class ProxyRoute:
    """Requests to `path` with one of `methods` go to the same path on `service`."""

    service: str
    path: str  # a Starlette path; `{id:int}` convertors confine what a parameter can hold
    methods: frozenset[str]

    @property
    def path_format(self) -> str:
        """The path with plain `{name}` placeholders, as it appears in OpenAPI documents."""
        return _CONVERTOR.sub(r"{\1}", self.path)


def _route(service: str, path: str, *methods: str) -> ProxyRoute:
    return ProxyRoute(service, path, frozenset(methods))


# Every route a client can reach by plain forwarding. Routes the gateway composes itself
# (gateway_service.composed) are absent here, creating a post or a comment among them (the author
# must exist); so is blog's delete-by-author, which only the user deletion uses.
ROUTE_TABLE: tuple[ProxyRoute, ...] = (
    _route("users", "/users/", "GET", "POST"),
    _route("users", "/users/search", "GET"),
    _route("users", "/users/stats", "GET"),
    _route("users", "/users/sorted", "GET"),
    _route("users", "/users/{user_id:int}", "GET", "PATCH"),
    _route("catalog", "/categories/", "GET", "POST"),
    _route("catalog", "/categories/{category_id:int}", "GET", "PATCH", "DELETE"),
    _route("catalog", "/categories/{category_id:int}/products", "GET"),
    _route("catalog", "/products/", "GET", "POST"),
    _route("catalog", "/products/bulk", "POST"),
    _route("catalog", "/products/{product_id:int}", "GET", "PATCH", "DELETE"),
    _route("catalog", "/products/{product_id:int}/images", "GET", "POST"),
    _route("catalog", "/products/{product_id:int}/images/{image_id:int}", "GET", "PATCH", "DELETE"),
    _route("catalog", "/products/{product_id:int}/stock-adjustments", "POST"),
    _route("blog", "/posts/", "GET"),
    _route("blog", "/posts/{post_id:int}", "PATCH", "DELETE"),
    _route("blog", "/posts/{post_id:int}/comments", "GET"),
    _route("blog", "/comments/{comment_id:int}", "GET", "DELETE"),
    _route("blog", "/tags/", "GET"),
)


def forwarded_headers(request: Request) -> dict[bytes, bytes]:
    """The request headers a service should see, as the bytes the client sent.

    A client may send any octet in a header value (HTTP allows obs-text); forwarding the bytes
    as they came avoids re-encoding them as text, which fails beyond ASCII.
    """
    headers: dict[bytes, bytes] = {}
    for name, value in request.headers.raw:
        if name in FORWARDED_REQUEST_HEADERS:
            # A header sent more than once is one comma-separated list (RFC 9110, 5.3).
            headers[name] = headers[name] + b", " + value if name in headers else value
    return headers


def relay(
    request: Request, downstream: Downstream, service: str, answer: httpx.Response
) -> Response:
    """The service's answer as the gateway's response, with its URLs pointing at the gateway.

    A service's 503 (its database is down) passes through; any other 5xx is the service's
    fault and becomes a 502 that names it.
    """
    if answer.status_code >= 500 and answer.status_code != 503:
        raise BadGateway(f"the {service} service failed ({answer.status_code})")
    headers: dict[str, str] = {}
    # One pass over the raw headers: looking each name up scans them all every time.
    for raw_name, raw_value in answer.headers.raw:
        name = raw_name.lower()
        if name in RELAYED_RESPONSE_HEADERS:
            value = raw_value.decode("latin-1")
            if name in _URL_HEADERS:
                service_origin = downstream.base_urls[service]
                gateway_origin = str(request.base_url).rstrip("/")
                value = value.replace(f"{service_origin}/", f"{gateway_origin}/")
            key = name.decode("latin-1")
            # A header sent more than once is one comma-separated list (RFC 9110, 5.3).
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return Response(content=answer.content, status_code=answer.status_code, headers=headers)


def downstream_of(request: Request) -> Downstream:
    """The process's Downstream, created by the gateway's lifespan."""
    downstream: Downstream = request.app.state.downstream
    return downstream


async def forward(request: Request, service: str, path: str) -> Response:
    """Send the client's request to `path` on `service` and relay the answer."""
    downstream = downstream_of(request)
    answer = await downstream.request(
        service,
        request.method,  # a HEAD arrives here as GET (RequestContextMiddleware)
        path,
        query=request.scope["query_string"],
        content=await request.body() or None,
        headers=forwarded_headers(request),
    )
    return relay(request, downstream, service, answer)


def _endpoint(route: ProxyRoute) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        # The upstream path is rebuilt from the table's template, never taken from the client.
        return await forward(
            request, route.service, route.path_format.format(**request.path_params)
        )

    endpoint.__name__ = f"proxy_{route.service}"
    return endpoint


def add_proxy_routes(app: FastAPI, routes: tuple[ProxyRoute, ...] = ROUTE_TABLE) -> None:
    """Register a forwarding endpoint for every route of the table."""
    for route in routes:
        app.router.add_route(
            route.path, _endpoint(route), methods=sorted(route.methods), include_in_schema=False
        )
