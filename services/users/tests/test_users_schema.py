"""Property-based tests of the users API from its own OpenAPI schema, over real HTTP."""

import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import settings

from servicekit.testing import TokenIssuer
from servicekit.testing.api_schema import call_and_validate, schema_of
from users_service.main import create_app
from users_service.settings import UsersSettings

# The schema alone: an app of development settings, whose key set is generated in a scratch
# directory rather than under ./var.
schema = schema_of(
    create_app(UsersSettings(signing_keys_file=Path(tempfile.mkdtemp()) / "signing-keys.json"))
)


@schema.parametrize()
@settings(max_examples=40, deadline=None)
def test_no_server_errors_and_responses_match_the_schema(
    case: schemathesis.Case[Any], service_url: str, token_issuer: TokenIssuer
) -> None:
    call_and_validate(case, service_url, token_issuer.admin_headers())
