"""Forwarding to the owning service by an explicit route table, and relaying its answer."""

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import httpx
from fastapi import FastAPI, Request, Response

from gateway_service.downstream import Downstream
from gateway_service.errors import BadGateway
from servicekit.auth import authenticate

# Headers that mean something end to end; hop-by-hop and server-specific ones stay behind.
# Authorization goes on unchanged: every service verifies the caller's token itself, and keeps
# each caller's Idempotency-Keys apart.
FORWARDED_REQUEST_HEADERS = frozenset(
    {
        b"accept",
        b"authorization",
        b"content-type",
        b"if-match",
        b"if-none-match",
        b"idempotency-key",
    }
)
RELAYED_RESPONSE_HEADERS = frozenset(
    {
        b"content-type",
        b"etag",
        b"location",
        b"link",
        b"allow",
        b"retry-after",
        b"cache-control",
        b"idempotent-replayed",
    }
)
_URL_HEADERS = frozenset({b"location", b"link"})
_CONVERTOR = re.compile(r"{(\w+):\w+}")


# Who may call a forwarded route, as far as the gateway judges before passing it on: "anyone"
# (a token, if sent, must be valid) or "signed_in". The service behind it judges the rest (an
# admin's route, an owner's resource) and answers 403 itself.
Rule = Literal["anyone", "signed_in"]


@dataclass(frozen=True)
class ProxyRoute:
    """Requests to `path` go to the same path on `service`; `rules` names each method's rule."""

    service: str
    path: str  # a Starlette path; `{id:int}` convertors confine what a parameter can hold
    rules: Mapping[str, Rule]
    # Login throttling counts failures per client address: the service is told the client's.
    forwards_client_address: bool = False

    @property
    def methods(self) -> frozenset[str]:
        return frozenset(self.rules)

    @property
    def path_format(self) -> str:
        """The path with plain `{name}` placeholders, as it appears in OpenAPI documents."""
        return _CONVERTOR.sub(r"{\1}", self.path)


def _route(service: str, path: str, **rules: Rule) -> ProxyRoute:
    return ProxyRoute(service, path, rules)


ANYONE: Rule = "anyone"
SIGNED_IN: Rule = "signed_in"

# Every route a client can reach by plain forwarding. Routes the gateway composes itself
# (gateway_service.composed) are absent here. So are the services' internal routes: users' event
# feed, and blog's delete-by-author.
ROUTE_TABLE: tuple[ProxyRoute, ...] = (
    _route("users", "/users/", GET=ANYONE, POST=ANYONE),
    _route("users", "/users/me", GET=SIGNED_IN),
    _route("users", "/users/search", GET=SIGNED_IN),
    _route("users", "/users/stats", GET=SIGNED_IN),
    _route("users", "/users/sorted", GET=ANYONE),
    _route("users", "/users/{user_id:int}", GET=ANYONE, PATCH=SIGNED_IN, DELETE=SIGNED_IN),
    ProxyRoute("users", "/auth/token", {"POST": ANYONE}, forwards_client_address=True),
    _route("users", "/auth/refresh", POST=ANYONE),
    _route("users", "/auth/logout", POST=ANYONE),
    _route("users", "/.well-known/jwks.json", GET=ANYONE),
    _route("catalog", "/categories/", GET=ANYONE, POST=SIGNED_IN),
    _route(
        "catalog", "/categories/{category_id:int}", GET=ANYONE, PATCH=SIGNED_IN, DELETE=SIGNED_IN
    ),
    _route("catalog", "/categories/{category_id:int}/products", GET=ANYONE),
    _route("catalog", "/products/", GET=ANYONE, POST=SIGNED_IN),
    _route("catalog", "/products/bulk", POST=SIGNED_IN),
    _route("catalog", "/products/{product_id:int}", GET=ANYONE, PATCH=SIGNED_IN, DELETE=SIGNED_IN),
    _route("catalog", "/products/{product_id:int}/images", GET=ANYONE, POST=SIGNED_IN),
    _route(
        "catalog",
        "/products/{product_id:int}/images/{image_id:int}",
        GET=ANYONE,
        PATCH=SIGNED_IN,
        DELETE=SIGNED_IN,
    ),
    _route("catalog", "/products/{product_id:int}/stock-adjustments", POST=SIGNED_IN),
    _route("blog", "/posts/", GET=ANYONE, POST=SIGNED_IN),
    _route("blog", "/posts/{post_id:int}", PATCH=SIGNED_IN, DELETE=SIGNED_IN),
    _route("blog", "/posts/{post_id:int}/comments", GET=ANYONE, POST=SIGNED_IN),
    _route("blog", "/comments/{comment_id:int}", GET=ANYONE, DELETE=SIGNED_IN),
    _route("blog", "/tags/", GET=ANYONE),
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
    """The service's answer as the gateway's response, with its URLs relative to the gateway.

    A service's 503 (its database is down, or it is busy) passes through with its
    `Retry-After`; any other 5xx is the service's fault and becomes a 502 that names it.
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
                # Services send relative references; an absolute URL of the service becomes
                # one too, never a URL built from the Host the client sent.
                value = value.replace(f"{downstream.base_urls[service]}/", "/")
            key = name.decode("latin-1")
            # A header sent more than once is one comma-separated list (RFC 9110, 5.3).
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return Response(content=answer.content, status_code=answer.status_code, headers=headers)


def downstream_of(request: Request) -> Downstream:
    """The process's Downstream, created by the gateway's lifespan."""
    downstream: Downstream = request.app.state.downstream
    return downstream


async def forward(
    request: Request, service: str, path: str, headers: dict[bytes, bytes] | None = None
) -> Response:
    """Send the client's request to `path` on `service` and relay the answer."""
    downstream = downstream_of(request)
    answer = await downstream.request(
        service,
        request.method,  # a HEAD arrives here as GET (RequestContextMiddleware)
        path,
        query=request.scope["query_string"],
        content=await request.body() or None,
        headers=forwarded_headers(request) if headers is None else headers,
    )
    return relay(request, downstream, service, answer)


def _endpoint(route: ProxyRoute) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        # A bad token, or none where one is needed, ends here, before any service is called.
        await authenticate(request, required=route.rules[request.method] == SIGNED_IN)
        headers = forwarded_headers(request)
        if route.forwards_client_address and request.client is not None:
            headers[b"x-forwarded-for"] = request.client.host.encode("latin-1")
        # The upstream path is rebuilt from the table's template, never taken from the client.
        return await forward(
            request, route.service, route.path_format.format(**request.path_params), headers
        )

    endpoint.__name__ = f"proxy_{route.service}"
    return endpoint


def add_proxy_routes(app: FastAPI, routes: tuple[ProxyRoute, ...] = ROUTE_TABLE) -> None:
    """Register a forwarding endpoint for every route of the table."""
    for route in routes:
        app.router.add_route(
            route.path, _endpoint(route), methods=sorted(route.methods), include_in_schema=False
        )
