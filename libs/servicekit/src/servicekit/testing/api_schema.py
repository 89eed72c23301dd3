"""Schemathesis runs against a service's own OpenAPI schema, over real HTTP."""

from typing import Any

import schemathesis
from fastapi import FastAPI
from schemathesis.specs.openapi.schemas import OpenApiSchema

# The APIs rightly refuse some schema-valid input that JSON Schema cannot describe: opaque
# cursors they did not issue, stale If-Match tags (412), NUL characters, references to rows
# that do not exist, emails the generator thinks well-formed but email-validator does not.
# Every other check runs: no server errors, documented status codes, bodies and headers
# that match the schema, schema-violating input rejected.
_SEMANTIC_REJECTIONS = [schemathesis.checks.positive_data_acceptance]


def schema_of(app: FastAPI) -> OpenApiSchema:
    """The app's OpenAPI schema, read from the app object (no server needed to collect tests)."""
    return schemathesis.openapi.from_dict(app.openapi())


def call_and_validate(
    case: schemathesis.Case[Any], base_url: str, headers: dict[str, str] | None = None
) -> None:
    """Send the generated request to the server at base_url and validate the response.

    `headers` are sent with it (an admin's token, so that every operation is reached past its
    access rule).
    """
    case.call_and_validate(base_url=base_url, headers=headers, excluded_checks=_SEMANTIC_REJECTIONS)
