"""Property-based tests of the users API from its own OpenAPI schema, over real HTTP."""

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from servicekit.testing import serving
from users_service.main import create_app
from users_service.settings import UsersSettings

# The API rightly refuses some schema-valid input that JSON Schema cannot describe: opaque
# cursors it did not issue, stale If-Match tags (412), NUL characters, emails that are
# well-formed for the generator but not deliverable addresses. Everything else is checked.
SEMANTIC_REJECTIONS = [schemathesis.checks.positive_data_acceptance]

schema = schemathesis.openapi.from_dict(create_app(UsersSettings()).openapi())


@pytest.fixture(scope="session")
def users_url(database_url: str, app: object) -> Iterator[str]:
    """A users server on the migrated test database (`app` runs the migrations)."""
    with serving(create_app(UsersSettings(database_url=database_url))) as base_url:
        yield base_url


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_responses_match_the_schema(
    case: schemathesis.Case[Any], users_url: str
) -> None:
    case.call_and_validate(base_url=users_url, excluded_checks=SEMANTIC_REJECTIONS)
