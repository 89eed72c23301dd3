"""The database fixture's promise: without Postgres, a developer's run skips and CI's fails."""

import pytest

pytest_plugins = ["pytester"]

NEEDS_POSTGRES = """
def test_needs_postgres(postgres_server_url):
    pass
"""
# Nothing listens on port 1: the connection is refused at once.
NO_SERVER = "postgresql+psycopg://postgres@127.0.0.1:1/postgres"


@pytest.mark.parametrize(("ci", "outcome"), [("true", "failed"), ("", "skipped")])
def test_a_test_that_cannot_get_postgres_fails_in_ci_and_skips_elsewhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    monkeypatch.setenv("TEST_DATABASE_URL", NO_SERVER)
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(NEEDS_POSTGRES)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(**{"errors" if outcome == "failed" else outcome: 1})
