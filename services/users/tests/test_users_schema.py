"""Property-based tests of the users API from its own OpenAPI schema, over real HTTP."""

import tempfile
from pathlib import Path

from servicekit.testing.api_schema import schema_test
from users_service.main import create_app
from users_service.settings import UsersSettings

# The schema alone: an app of development settings, whose key set is generated in a scratch
# directory rather than under ./var.
test_no_server_errors_and_responses_match_the_schema = schema_test(
    create_app(UsersSettings(signing_keys_file=Path(tempfile.mkdtemp()) / "signing-keys.json"))
)
