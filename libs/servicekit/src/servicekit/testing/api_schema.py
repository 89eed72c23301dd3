"""Schemathesis runs against a service's own OpenAPI schema, over real HTTP."""

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.schemas import OpenApiSchema

from servicekit.testing import TokenIssuer

# Values only the server issues: the cursor of a next page (from its Link header) and the
# version a precondition names (from its ETag). No generator can make a valid one, so a
# request that is positive by the schema leaves them out; negative cases still send them
# forged, and must be refused. Every check schemathesis has runs, none excluded.
_SERVER_ISSUED_QUERY = ("after",)
_SERVER_ISSUED_HEADERS = ("If-Match",)
# A value the client must make unique for each request it means (servicekit.idempotency):
# generated values repeat ("0", "!"), and a repeat with another body is rightly 422. A positive
# request gets a fresh one; negative cases still send generated ones, malformed included.
_CLIENT_UNIQUE_HEADERS = ("Idempotency-Key",)
# What the positive data check accepts by default: schemathesis' own list.
_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]


def checks_config(rejects_schema_valid_data: Sequence[str] = ()) -> SchemathesisConfig:
    """Every check, with `rejects_schema_valid_data` naming operations ("POST /products/")
    that may answer 422 to data the schema allows, for a rule no schema can state (a
    reference to a row that must exist); the caller says which rule in a comment. The
    positive data check still runs on them, accepting 422 besides its usual statuses.
    """
    operations = [
        {
            "include-name": name,
            "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "422"]}},
        }
        for name in rejects_schema_valid_data
    ]
    return SchemathesisConfig.from_dict({"operations": operations})


def schema_of(app: FastAPI, rejects_schema_valid_data: Sequence[str] = ()) -> OpenApiSchema:
    """The app's OpenAPI schema, read from the app object (no server needed to collect tests),
    checked as checks_config says."""
    config = checks_config(rejects_schema_valid_data)
    return schemathesis.openapi.from_dict(app.openapi(), config=config)


def _as_a_client_would_send(case: schemathesis.Case[Any]) -> None:
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    for name in _SERVER_ISSUED_QUERY:
        if case.query:
            case.query.pop(name, None)
    for name in _SERVER_ISSUED_HEADERS:
        if case.headers:
            for key in [key for key in case.headers if key.lower() == name.lower()]:
                del case.headers[key]
    for name in _CLIENT_UNIQUE_HEADERS:
        if case.headers:
            for key in [key for key in case.headers if key.lower() == name.lower()]:
                case.headers[key] = str(uuid.uuid4())


def call_and_validate(
    case: schemathesis.Case[Any], base_url: str, headers: dict[str, str] | None = None
) -> None:
    """Send the generated request to the server at base_url and validate the response with
    every check.

    `headers` are sent with it (an admin's token, so that every operation is reached past its
    access rule).
    """
    _as_a_client_would_send(case)
    case.call_and_validate(base_url=base_url, headers=headers)


def schema_test(app: FastAPI, rejects_schema_valid_data: Sequence[str] = ()) -> Callable[..., None]:
    """A service's property-based test, for its suite to collect under a name of its own:
    requests generated from `app`'s OpenAPI schema (read from the app object; checked as
    checks_config says), sent as an admin to the service served over real HTTP (`service_url`),
    each answer validated with every check.
    """

    def test(case: schemathesis.Case[Any], service_url: str, token_issuer: TokenIssuer) -> None:
        call_and_validate(case, service_url, token_issuer.admin_headers())

    schema = schema_of(app, rejects_schema_valid_data)
    generated: Callable[..., None] = schema.parametrize()(
        settings(max_examples=40, deadline=None)(test)
    )
    return generated
