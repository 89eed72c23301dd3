"""Property-based tests of the catalog API from its own OpenAPI schema, over real HTTP."""

from typing import Any

import schemathesis
from hypothesis import settings

from catalog_service.main import create_app
from catalog_service.settings import CatalogSettings
from servicekit.testing import TokenIssuer
from servicekit.testing.api_schema import call_and_validate, schema_of

# A product names its category by id, which must exist (422 naming `category_id` otherwise),
# and a price range's minimum must not exceed its maximum (422): rules across rows and across
# parameters, which no JSON Schema can state. Those operations may refuse schema-valid data
# with 422; every other status stays as strict as everywhere else, and every check runs.
schema = schema_of(
    create_app(CatalogSettings()),
    rejects_schema_valid_data=[
        "POST /products/",
        "POST /products/bulk",
        "PATCH /products/{product_id}",
        "GET /products/",
    ],
)


@schema.parametrize()
@settings(max_examples=40, deadline=None)
def test_no_server_errors_and_responses_match_the_schema(
    case: schemathesis.Case[Any], service_url: str, token_issuer: TokenIssuer
) -> None:
    call_and_validate(case, service_url, token_issuer.admin_headers())
