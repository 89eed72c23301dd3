"""The images: a Dockerfile per process with one shared body, clean under hadolint, whose install
steps build a working environment from uv.lock for that process alone.

Images are not built here (that needs a registry for the base image); the install test runs the
Dockerfiles' own `uv sync` commands on a copy of the build context instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from deploy.tests.conftest import Process

REPOSITORY = Path(__file__).parents[2]
SHARED_BODY_MARKER = "# ---- Below this line every image's Dockerfile is the same"
DEPENDENCIES_STEP = 'uv sync --frozen --no-dev --no-install-workspace --package "${DISTRIBUTION}"'
PROJECT_STEP = 'uv sync --frozen --no-dev --no-editable --package "${DISTRIBUTION}"'


def _dockerfile(process: Process) -> Path:
    return REPOSITORY / process.directory / "Dockerfile"


def _split(process: Process) -> tuple[dict[str, str], str]:
    """The build arguments a Dockerfile's header declares, and its shared body."""
    text = _dockerfile(process).read_text()
    header, marker, body = text.partition(SHARED_BODY_MARKER)
    assert marker, f"{process.directory}/Dockerfile has no shared-body marker"
    arguments = dict(re.findall(r"^ARG (\w+)=(.+)$", header, flags=re.MULTILINE))
    return arguments, marker + body


@pytest.fixture(scope="module")
def shared_body() -> str:
    """The body every Dockerfile shares, as the users service's Dockerfile has it."""
    return (REPOSITORY / "services/users/Dockerfile").read_text().partition(SHARED_BODY_MARKER)[2]


def test_every_project_in_the_workspace_has_a_dockerfile(processes: tuple[Process, ...]) -> None:
    known = {process.directory for process in processes}
    projects = [path.parent for path in REPOSITORY.glob("services/*/pyproject.toml")]
    projects.append(REPOSITORY / "gateway")
    for project in projects:
        directory = project.relative_to(REPOSITORY).as_posix()
        assert directory in known, f"{directory} is deployed nowhere: add it to deploy/"
        assert (project / "Dockerfile").is_file(), (
            f"{directory}/Dockerfile is missing: copy services/users/Dockerfile and change the "
            "build arguments above its shared-body line"
        )


def test_dockerfile_passes_hadolint(project: Process, hadolint: Path) -> None:
    result = subprocess.run(
        [hadolint, "--no-color", _dockerfile(project)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shares_the_common_body(project: Process, shared_body: str) -> None:
    _, body = _split(project)
    assert body.partition(SHARED_BODY_MARKER)[2] == shared_body


def test_dockerfile_header_names_its_project(project: Process) -> None:
    arguments, _ = _split(project)
    assert arguments == {
        "PYTHON_IMAGE": "python:3.11-slim-bookworm",
        "DISTRIBUTION": project.distribution,
        "PROJECT_DIR": project.directory,
        "APP": f"{project.package}.main:create_app",
        "PORT": str(project.port),
    }
    pyproject = tomllib.loads((REPOSITORY / project.directory / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == project.distribution
    assert (REPOSITORY / project.directory / "alembic.ini").is_file() == project.has_database


def test_base_image_is_a_build_argument_for_both_stages(shared_body: str) -> None:
    assert re.findall(r"^FROM (.+)$", shared_body, flags=re.MULTILINE) == [
        "${PYTHON_IMAGE} AS build",
        "${PYTHON_IMAGE}",
    ]


def test_images_run_as_an_unprivileged_user(shared_body: str) -> None:
    users = re.findall(r"^USER (.+)$", shared_body, flags=re.MULTILINE)
    # Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
    assert users == ["10001:10001"]


def test_images_check_liveness_without_curl(shared_body: str) -> None:
    healthcheck = shared_body[shared_body.index("HEALTHCHECK") :]
    assert '"python", "-c"' in healthcheck
    assert "/health/live" in healthcheck


def test_images_serve_the_app_factory_with_uvicorn(shared_body: str) -> None:
    for setting in (
        "UVICORN_APP=${APP}",
        "UVICORN_FACTORY=true",
        "UVICORN_HOST=0.0.0.0",
        "UVICORN_PORT=${PORT}",
        "UVICORN_ACCESS_LOG=false",
    ):
        assert setting in shared_body
    assert "EXPOSE ${PORT}" in shared_body
    assert shared_body.rstrip().endswith('CMD ["uvicorn"]')


def test_images_install_with_the_tested_uv_commands(shared_body: str) -> None:
    assert DEPENDENCIES_STEP in shared_body
    assert PROJECT_STEP in shared_body


def test_build_context_leaves_out_tests_and_local_state() -> None:
    rules = (REPOSITORY / ".dockerignore").read_text().splitlines()
    # Everything is left out unless named: the projects, their lock and workspace file.
    assert rules.index("**") < rules.index("!libs/")
    for excluded in ("**/tests/", "**/.venv/", "**/var/", "**/__pycache__/"):
        assert excluded in rules


def _build_context(destination: Path, project: Process) -> None:
    ignored = shutil.ignore_patterns("tests", "__pycache__", ".venv", "var", "Dockerfile")
    shutil.copytree(REPOSITORY / "libs", destination / "libs", ignore=ignored)
    shutil.copytree(REPOSITORY / project.directory, destination / project.directory, ignore=ignored)


def _run_step(step: str, context: Path, project: Process, venv: Path, uv: Path) -> None:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("VIRTUAL_ENV")
    }
    environment.update(
        DISTRIBUTION=project.distribution,
        PATH=f"{uv.parent}{os.pathsep}{environment.get('PATH', '')}",
        UV_PROJECT_ENVIRONMENT=str(venv),
        UV_PYTHON=sys.executable,
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
    )
    result = subprocess.run(
        ["/bin/sh", "-c", step],
        cwd=context,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_install_steps_build_a_working_environment(
    project: Process, uv: Path, tmp_path: Path
) -> None:
    context, venv, runtime = tmp_path / "src", tmp_path / "app" / ".venv", tmp_path / "app"
    context.mkdir()
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(REPOSITORY / name, context)
    # The dependency layer needs the lock alone, so it is reused until uv.lock changes.
    _run_step(DEPENDENCIES_STEP, context, project, venv, uv)
    _build_context(context, project)
    _run_step(PROJECT_STEP, context, project, venv, uv)

    # The app factory imports from the installed copy, not the checkout: the image holds no
    # source tree.
    imported = subprocess.run(
        [
            venv / "bin" / "python",
            "-c",
            f"from {project.package} import main; print(main.create_app.__module__, main.__file__)",
        ],
        cwd=runtime,
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    module, location = imported.stdout.split()
    assert module == f"{project.package}.main"
    assert location.startswith(str(venv))
    if project.has_database:
        _migrations_render_from_the_image_layout(project, context, runtime, venv)


def _migrations_render_from_the_image_layout(
    project: Process, context: Path, runtime: Path, venv: Path
) -> None:
    # What the Dockerfile copies beside the environment: alembic.ini and migrations/.
    target = runtime / project.directory
    target.mkdir(parents=True)
    shutil.copy(context / project.directory / "alembic.ini", target)
    shutil.copytree(context / project.directory / "migrations", target / "migrations")
    program, *arguments = project.migration_command
    # The URL comes from the environment, as in a container; --sql renders without connecting.
    url = "postgresql+psycopg://user@db.invalid:5432/offline"
    rendered = subprocess.run(
        [venv / "bin" / program, *arguments, "--sql"],
        cwd=runtime,
        env={**os.environ, f"{project.env_prefix}DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr
    assert "CREATE TABLE" in rendered.stdout
