"""The gateway has no database: starting it imports none of the database stack."""

import json
import subprocess
import sys

# What servicekit holds for the services' databases; each would cost every gateway start its
# import time for nothing.
DATABASE_PACKAGES = {"sqlalchemy", "psycopg", "psycopg_binary", "alembic", "aiosqlite"}

# In a fresh interpreter: the test session itself has imported the services, and servicekit's
# pytest plugin imports the database stack.
PROGRAM = """
import json, sys
from gateway_service.main import create_app
create_app()
print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules})))
"""


def test_building_the_gateway_imports_no_database_package() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True, timeout=60
    )
    imported = set(json.loads(result.stdout))

    assert "gateway_service" in imported
    assert imported & DATABASE_PACKAGES == set()
