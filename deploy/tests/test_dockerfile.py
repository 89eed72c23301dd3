"""The images: one Dockerfile, clean under hadolint, that build arguments turn into each process's
image, and whose install steps build a working environment from uv.lock for that process alone.

Images are not built here (that needs a registry for the base image); the install test runs the
Dockerfile's own `uv sync` commands on a copy of the build context instead.
"""

from __future__ import annotations

import json
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
DOCKERFILE = REPOSITORY / "Dockerfile"
DEPENDENCIES_STEP = 'uv sync --frozen --no-dev --no-install-workspace --package "${DISTRIBUTION}"'
PROJECT_STEP = 'uv sync --frozen --no-dev --no-editable --package "${DISTRIBUTION}"'
# What the build stage copies from the context, in order, and the runtime stage from the build
# stage: the install test's copy of the context holds the same.
COPIES = [
    "pyproject.toml uv.lock ./",
    "libs libs",
    "${PROJECT} ${PROJECT}",
    "--from=build /app /app",
]
MIGRATIONS_COPY = 'cp -r "${PROJECT}/alembic.ini" "${PROJECT}/migrations" "/app/${PROJECT}/"'
# What only a process with a database needs: the gateway's image must not hold it.
DATABASE_STACK = {"sqlalchemy", "alembic", "psycopg"}


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


def _arguments(text: str) -> dict[str, str | None]:
    """The build arguments the text declares, each with its default (None without one)."""
    return {
        name: default or None
        for name, default in re.findall(r"^ARG (\w+)(?:=(.+))?$", text, flags=re.MULTILINE)
    }


def test_every_project_in_the_workspace_has_an_image(processes: tuple[Process, ...]) -> None:
    known = {process.directory for process in processes}
    projects = [path.parent for path in REPOSITORY.glob("services/*/pyproject.toml")]
    projects.append(REPOSITORY / "gateway")
    for project in projects:
        directory = project.relative_to(REPOSITORY).as_posix()
        assert directory in known, (
            f"{directory} is deployed nowhere: add it to deploy/, docker-compose.yml and the "
            "Makefile's IMAGES"
        )


def test_build_arguments_name_the_project(project: Process) -> None:
    directory = REPOSITORY / project.build_arguments["PROJECT"]
    pyproject = tomllib.loads((directory / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == project.build_arguments["DISTRIBUTION"]
    assert (directory / "alembic.ini").is_file() == project.has_database


def test_make_images_builds_every_image_from_the_dockerfile(
    processes: tuple[Process, ...], make: Path
) -> None:
    # The builder make is given prints each command line it receives instead of building.
    recorder = f"{sys.executable} -c 'import json, sys; print(json.dumps(sys.argv[1:]))'"
    result = subprocess.run(
        [
            make,
            "--no-print-directory",
            "images",
            f"IMAGE_BUILD={recorder}",
            "IMAGE_PREFIX=registry.example.com/",
            "IMAGE_TAG=1.0",
            "PYTHON_IMAGE=python:3.11-slim-bookworm",
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        [
            "-f",
            "Dockerfile",
            "-t",
            f"registry.example.com/{process.image}:1.0",
            "--build-arg",
            "PYTHON_IMAGE=python:3.11-slim-bookworm",
            *(
                option
                for name, value in process.build_arguments.items()
                for option in ("--build-arg", f"{name}={value}")
            ),
            ".",
        ]
        for process in processes
    ]


def test_dockerfile_passes_hadolint(hadolint: Path) -> None:
    result = subprocess.run(
        [hadolint, "--no-color", DOCKERFILE], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_project_comes_from_build_arguments_without_defaults(dockerfile: str) -> None:
    header, _, stages = dockerfile.partition("\nFROM ")
    assert _arguments(header) == {"PYTHON_IMAGE": "python:3.11-slim-bookworm"}
    # Without a default, a build that names no project fails instead of building one.
    required = {name for name, default in _arguments(stages).items() if default is None}
    assert required == {"PROJECT", "DISTRIBUTION", "APP", "PORT"}


def test_base_image_is_a_build_argument_for_both_stages(dockerfile: str) -> None:
    assert re.findall(r"^FROM (.+)$", dockerfile, flags=re.MULTILINE) == [
        "${PYTHON_IMAGE} AS build",
        "${PYTHON_IMAGE}",
    ]


def test_images_copy_the_lock_the_library_and_their_project_alone(dockerfile: str) -> None:
    assert re.findall(r"^COPY (.+)$", dockerfile, flags=re.MULTILINE) == COPIES
    assert MIGRATIONS_COPY in dockerfile


def test_images_run_as_an_unprivileged_user(dockerfile: str) -> None:
    users = re.findall(r"^USER (.+)$", dockerfile, flags=re.MULTILINE)
    # Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
    assert users == ["10001:10001"]


def test_images_check_liveness_without_curl(dockerfile: str) -> None:
    healthcheck = dockerfile[dockerfile.index("HEALTHCHECK") :]
    assert '"python", "-c"' in healthcheck
    assert "/health/live" in healthcheck


def test_images_serve_the_app_factory_with_uvicorn(dockerfile: str) -> None:
    for setting in (
        "UVICORN_APP=${APP}",
        "UVICORN_FACTORY=true",
        "UVICORN_HOST=0.0.0.0",
        "UVICORN_PORT=${PORT}",
        "UVICORN_ACCESS_LOG=false",
    ):
        assert setting in dockerfile
    assert "EXPOSE ${PORT}" in dockerfile
    assert dockerfile.rstrip().endswith('CMD ["uvicorn"]')


def test_images_install_with_the_tested_uv_commands(dockerfile: str) -> None:
    assert DEPENDENCIES_STEP in dockerfile
    assert PROJECT_STEP in dockerfile


def test_build_context_leaves_out_tests_and_local_state() -> None:
    rules = (REPOSITORY / ".dockerignore").read_text().splitlines()
    # Everything is left out unless named: the projects, their lock and workspace file.
    assert rules.index("**") < rules.index("!libs/")
    for excluded in ("**/tests/", "**/.venv/", "**/var/", "**/__pycache__/"):
        assert excluded in rules


def _build_context(destination: Path, project: Process) -> None:
    """What COPIES takes after the lock: the shared library and the project, as .dockerignore
    leaves them."""
    ignored = shutil.ignore_patterns("tests", "__pycache__", ".venv", "var")
    shutil.copytree(REPOSITORY / "libs", destination / "libs", ignore=ignored)
    shutil.copytree(REPOSITORY / project.directory, destination / project.directory, ignore=ignored)


def _run_step(step: str, context: Path, project: Process, venv: Path, uv: Path) -> None:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("VIRTUAL_ENV")
    }
    # A RUN step sees the stage's build arguments as environment variables.
    environment.update(project.build_arguments)
    environment.update(
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


def _installed_distributions(venv: Path) -> set[str]:
    listed = subprocess.run(
        [
            venv / "bin" / "python",
            "-c",
            "import importlib.metadata as m; print(*(d.name for d in m.distributions()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return {re.sub(r"[-_.]+", "-", name).lower() for name in listed.stdout.split()}


def test_install_steps_build_a_working_environment(
    project: Process, processes: tuple[Process, ...], uv: Path, tmp_path: Path
) -> None:
    context, venv, runtime = tmp_path / "src", tmp_path / "app" / ".venv", tmp_path / "app"
    context.mkdir()
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(REPOSITORY / name, context)
    # The dependency layer needs the lock alone, so it is reused until uv.lock changes.
    _run_step(DEPENDENCIES_STEP, context, project, venv, uv)
    _build_context(context, project)
    _run_step(PROJECT_STEP, context, project, venv, uv)

    # The app factory the image serves (UVICORN_APP) imports from the installed copy, not the
    # checkout: the image holds no source tree.
    app_module, factory = project.build_arguments["APP"].split(":")
    imported = subprocess.run(
        [
            venv / "bin" / "python",
            "-c",
            f"import {app_module} as app; print(app.{factory}.__module__, app.__file__)",
        ],
        cwd=runtime,
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    module, location = imported.stdout.split()
    assert module == app_module
    assert location.startswith(str(venv))

    # The process's own dependencies alone: no other process, no dev tool, and the database
    # stack only where there is a database.
    installed = _installed_distributions(venv)
    assert project.distribution in installed
    others = {process.distribution for process in processes} - {project.distribution}
    assert not installed & (others | {"pytest", "ruff", "mypy"})
    if project.has_database:
        assert installed >= DATABASE_STACK
        _migrations_render_from_the_image_layout(project, context, runtime, venv)
    else:
        assert not installed & DATABASE_STACK


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
