"""Property-based tests of the whole public API from the gateway's merged OpenAPI document.

Every operation a client can call, composed or proxied, runs against the real services.
"""

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import given, settings
from schemathesis.core.result import Ok

from gateway_service.main import create_app
from gateway_service.settings import GatewaySettings
from servicekit.testing import TokenIssuer, serving
from servicekit.testing.api_schema import call_and_validate, checks_config


@pytest.fixture
def gateway_url(gateway_settings: Callable[..., GatewaySettings], gateway: object) -> Iterator[str]:
    """A gateway served over real HTTP, in front of running, emptied services."""
    with serving(create_app(gateway_settings())) as url:
        yield url


def test_no_server_errors_and_responses_match_the_merged_schema(
    gateway_url: str, token_issuer: TokenIssuer
) -> None:
    # The services' operations whose rules span rows or parameters (see their schema tests).
    config = checks_config(
        [
            "POST /products/",
            "POST /products/bulk",
            "PATCH /products/{product_id}",
            "GET /products/",
            "GET /posts/",
            "POST /posts/",
            "PATCH /posts/{post_id}",
            "POST /users/{user_id}/posts",
            "GET /users/{user_id}/posts",
        ]
    )
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json", config=config)
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results) > 30  # every operation of the merged document is valid

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None)
        def check(case: schemathesis.Case[Any]) -> None:
            call_and_validate(case, gateway_url, token_issuer.admin_headers())

        check()
