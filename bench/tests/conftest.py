"""What the bench's tests need beyond the shared fixtures (servicekit.testing.plugin)."""

import os

import pytest

from bench.nginx import nginx_path


@pytest.fixture(scope="session")
def nginx() -> str:
    """The nginx executable; scripts/install-bench-tools installs it (as `make bench` does)."""
    found = nginx_path()
    if found is None:
        message = "nginx is not installed; scripts/install-bench-tools installs it as root"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found
