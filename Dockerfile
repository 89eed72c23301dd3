# The image of each process, a service or the gateway, which build arguments name. Build from the
# repository root; docker-compose.yml and the Makefile's `images` give each image its arguments:
#   docker build --build-arg PROJECT=services/users --build-arg DISTRIBUTION=users-service \
#     --build-arg APP=users_service.main:create_app --build-arg PORT=8001 -t users-service .
# An image installs its own distribution and what uv.lock gives it alone: the gateway's holds no
# SQLAlchemy, Alembic or database driver. A service's image also migrates its database:
#   docker run --rm -e USERS_DATABASE_URL=... users-service python -m servicekit.migrate services/users/alembic.ini
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# uv from PyPI, the version scripts/bootstrap-uv installs: the build reaches no registry but the
# base image's and PyPI, and uv's built-in build backend builds the workspace packages offline.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src

# The project's directory, its distribution, its app factory and the port it serves on. None has
# a default: a build that leaves one out stops here, before it installs anything.
ARG PROJECT
ARG DISTRIBUTION
ARG APP
ARG PORT
RUN test -n "${PROJECT}" && test -n "${DISTRIBUTION}" && test -n "${APP}" && test -n "${PORT}" \
    || { echo "build arguments PROJECT, DISTRIBUTION, APP and PORT are required" >&2; exit 1; }

# Third-party dependencies first, from the lock alone: this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package "${DISTRIBUTION}"

# Then the shared library and this project, installed as wheels (not editable): the runtime
# stage copies /app alone.
COPY libs libs
COPY ${PROJECT} ${PROJECT}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "${DISTRIBUTION}"

# A service's migrations travel in its image, so the image that serves also migrates.
RUN if [ -f "${PROJECT}/alembic.ini" ]; then \
      mkdir -p "/app/${PROJECT}" \
      && cp -r "${PROJECT}/alembic.ini" "${PROJECT}/migrations" "/app/${PROJECT}/"; \
    fi

FROM ${PYTHON_IMAGE}
ARG APP
ARG PORT
RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid app --home-dir /nonexistent \
       --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /app /app
# The app's own state (the users service's development signing keys, ./var/): a volume mounted
# here starts out owned by the app user, on a root filesystem that is otherwise read-only.
RUN mkdir /app/var && chown 10001:10001 /app/var
WORKDIR /app
# uvicorn reads every option from UVICORN_* variables, so each one can be overridden at run time
# (UVICORN_WORKERS, FORWARDED_ALLOW_IPS, ...). The app logs one JSON line per request itself.
# On SIGTERM uvicorn stops accepting connections and gives the requests in flight
# UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN seconds to finish: as long as a request may last (a service's
# pool wait and statement timeout, the gateway's wait for a service). Whatever stops the container
# waits longer before it kills it (Kubernetes: deploy/README.md, "Releasing"; Compose: its
# stop_grace_period).
# A connection idle for UVICORN_TIMEOUT_KEEP_ALIVE seconds is closed; a request its client sends
# as it closes is lost, with no answer and no log line. So each process keeps idle connections
# longer than whatever calls it: the gateway longer than the load balancers and Ingress
# controllers in front of it (60 s idle is common: ingress-nginx, AWS ALB), a service far longer
# than the gateway's pool keeps them (GATEWAY_KEEPALIVE_EXPIRY). deploy/README.md, "Keep-alive".
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UVICORN_APP=${APP} \
    UVICORN_FACTORY=true \
    UVICORN_HOST=0.0.0.0 \
    UVICORN_PORT=${PORT} \
    UVICORN_PROXY_HEADERS=true \
    UVICORN_ACCESS_LOG=false \
    UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN=20 \
    UVICORN_TIMEOUT_KEEP_ALIVE=75
USER 10001:10001
EXPOSE ${PORT}
# Slim images have no curl: the probe is Python's own HTTP client.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['UVICORN_PORT']}/health/live\", timeout=2)"]
CMD ["uvicorn"]
