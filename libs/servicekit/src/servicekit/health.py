"""Liveness (the process answers) and readiness (its database answers) probes.

Readiness asks the database on a connection of its own, never one of the pools that serve
requests: a process whose connections are all busy can still serve, and stays ready
(servicekit.readiness).
"""

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from servicekit.auth import anyone
from servicekit.database import get_database
from servicekit.schemas import Health

router = APIRouter(prefix="/health", tags=["health"], dependencies=[Depends(anyone)])


@router.get("/live", response_model=Health)
async def live() -> Health:
    """The process is up and serving requests."""
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Health,
    responses={
        503: {
            "model": Health,
            "description": "The database does not answer (a busy process is still ready).",
        }
    },
)
async def ready(request: Request) -> JSONResponse:
    """The service can serve traffic: its database answers, however busy its pools are."""
    reachable = await get_database(request).is_reachable()
    providers: dict[str, Callable[[], Any]] = request.app.state.health_details
    health = Health(
        status="ok" if reachable else "unavailable",
        checks={"database": "ok" if reachable else "unreachable"},
        details={name: provide() for name, provide in providers.items()},
    )
    body = health.model_dump(exclude=None if health.details else {"details"})
    return JSONResponse(body, status_code=200 if reachable else 503)
