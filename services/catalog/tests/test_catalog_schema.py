"""Property-based tests of the catalog API from its own OpenAPI schema, over real HTTP."""

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from catalog_service.main import create_app
from catalog_service.settings import CatalogSettings
from servicekit.testing import TokenIssuer
from servicekit.testing.api_schema import call_and_validate, schema_of

schema = schema_of(create_app(CatalogSettings()))


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_schema(
    case: schemathesis.Case[Any], service_url: str, token_issuer: TokenIssuer
) -> None:
    call_and_validate(case, service_url, token_issuer.admin_headers())
