# The two commands: `make run` starts the system, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH, or bootstrapped into ./.tools on a machine that has only Python and make.
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
SERVICES := users catalog blog
PROJECTS := libs/servicekit $(addprefix services/,$(SERVICES)) gateway deploy bench
# The container tools, replaceable from the environment (Podman, an older Compose, a builder other
# than Docker's): `COMPOSE="docker-compose" IMAGE_BUILD="podman build" make up`.
COMPOSE ?= docker compose
IMAGE_BUILD ?= docker build
# The images `make images` builds from the one Dockerfile, as docker-compose.yml names and builds
# them: <image>,<project directory>,<app factory>,<port>, each image named after its distribution.
IMAGES := users-service,services/users,users_service.main:create_app,8001 \
	catalog-service,services/catalog,catalog_service.main:create_app,8002 \
	blog-service,services/blog,blog_service.main:create_app,8003 \
	gateway,gateway,gateway_service.main:create_app,8000
PYTHON_IMAGE ?= python:3.11-slim-bookworm
IMAGE_TAG ?= dev

.PHONY: help install run migrate admin test lint format bench images up down logs

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.tools/bin/uv:
	@scripts/bootstrap-uv

install: $(UV)  ## Install every dependency, pinned by uv.lock
	@$(UV) sync --frozen --quiet

migrate: install  ## Migrate every service's database to head
	@for service in $(SERVICES); do \
	  echo "migrating $$service"; \
	  $(UV) run --frozen --no-sync python -m servicekit.migrate services/$$service/alembic.ini || exit 1; \
	done

admin: migrate  ## Create an admin, or make an existing user one: make admin EMAIL=... PASSWORD=...
	@if [ -z "$(EMAIL)" ] || [ -z "$(PASSWORD)" ]; then \
	  echo "usage: make admin EMAIL=you@example.com PASSWORD='at least 8 characters'" >&2; exit 2; \
	fi
	@$(UV) run --frozen --no-sync python -m users_service.admin --email "$(EMAIL)" --password "$(PASSWORD)"

run: migrate  ## Run the services in the foreground (Ctrl-C stops them all)
	@$(UV) run --frozen --no-sync honcho --no-prefix start --procfile Procfile

# promtool checks the Prometheus configuration and alert rules (deploy/monitoring); nginx is the
# bench's reverse proxy, whose own tests run here. Installing them needs root: without them, their
# tests skip (fail with CI=true) and say why.
test: install  ## Run every project's tests (Postgres via TEST_DATABASE_URL or testcontainers)
	@scripts/install-promtool || true
	@scripts/install-bench-tools || true
	@$(UV) run --frozen --no-sync pytest $(PYTEST_ARGS)

lint: install  ## ruff check, ruff format --check, mypy --strict per project
	@$(UV) run --frozen --no-sync ruff check .
	@$(UV) run --frozen --no-sync ruff format --check .
	@for project in $(PROJECTS); do $(UV) run --frozen --no-sync mypy $$project || exit 1; done

format: install  ## Format and autofix
	@$(UV) run --frozen --no-sync ruff format .
	@$(UV) run --frozen --no-sync ruff check --fix .

bench: install  ## Benchmarks on Postgres: seed, drive every scenario with wrk, report (BENCH_ARGS=--help)
	@scripts/install-bench-tools
	@$(UV) run --frozen --no-sync python -m bench $(BENCH_ARGS)

images:  ## Build the four images with IMAGE_BUILD (default: docker build)
	@for image in $(IMAGES); do \
	  IFS=, read -r distribution project app port <<< "$$image"; \
	  $(IMAGE_BUILD) -f Dockerfile -t "$(IMAGE_PREFIX)$$distribution:$(IMAGE_TAG)" \
	    --build-arg PYTHON_IMAGE="$(PYTHON_IMAGE)" --build-arg PROJECT="$$project" \
	    --build-arg DISTRIBUTION="$$distribution" --build-arg APP="$$app" --build-arg PORT="$$port" \
	    . || exit 1; \
	done

up: images  ## Build the images and start the system in Docker, gateway on 127.0.0.1:8000
	@$(COMPOSE) up --detach --no-build
	@$(COMPOSE) ps

down:  ## Stop and remove the Docker containers (the databases' volumes are kept)
	@$(COMPOSE) down

logs:  ## Follow the Docker containers' logs
	@$(COMPOSE) logs --follow --tail=100
