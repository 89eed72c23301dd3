"""Property-based tests of the catalog API from its own OpenAPI schema, over real HTTP."""

from catalog_service.main import create_app
from catalog_service.settings import CatalogSettings
from servicekit.testing.api_schema import schema_test

# A product names its category by id, which must exist (422 naming `category_id` otherwise),
# and a price range's minimum must not exceed its maximum (422): rules across rows and across
# parameters, which no JSON Schema can state. Those operations may refuse schema-valid data
# with 422; every other status stays as strict as everywhere else, and every check runs.
test_no_server_errors_and_responses_match_the_schema = schema_test(
    create_app(CatalogSettings()),
    rejects_schema_valid_data=[
        "POST /products/",
        "POST /products/bulk",
        "PATCH /products/{product_id}",
        "GET /products/",
    ],
)
