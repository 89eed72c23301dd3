"""The gateway's probes: live when it serves, ready when every service is ready."""

import asyncio

import aiohttp
import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from gateway_service.downstream import Downstream
from gateway_service.proxy import downstream_of
from servicekit.auth import anyone
from servicekit.schemas import Health

router = APIRouter(prefix="/health", tags=["health"], dependencies=[Depends(anyone)])
PROBE_TIMEOUT = 2.0


@router.get("/live", response_model=Health)
async def live() -> Health:
    """The gateway process is up and serving requests."""
    return Health(status="ok")


async def _service_state(client: httpx.AsyncClient, base_url: str) -> str:
    try:
        answer = await client.get(f"{base_url}/health/ready", timeout=PROBE_TIMEOUT)
    except (httpx.ConnectError, httpx.ConnectTimeout):
        # Transports differ in which of the two a refused connection raises.
        return "unreachable"
    except httpx.TimeoutException:
        return "timeout"
    except (httpx.TransportError, aiohttp.ClientError):
        return "unreachable"
    return "ok" if answer.status_code == 200 else "unavailable"


@router.get(
    "/ready",
    response_model=Health,
    responses={503: {"model": Health, "description": "A service is not ready."}},
)
async def ready(request: Request) -> JSONResponse:
    """Every service is ready; the body gives each one's state either way."""
    checks = await service_states(downstream_of(request))
    all_ok = all(state == "ok" for state in checks.values())
    health = Health(status="ok" if all_ok else "unavailable", checks=checks)
    return JSONResponse(health.model_dump(), status_code=200 if all_ok else 503)


async def service_states(downstream: Downstream) -> dict[str, str]:
    """Each service's readiness by name ("ok" or why not), all asked at once; each service's
    circuit learns what its check found."""
    names = list(downstream.base_urls)
    states = await asyncio.gather(
        *(_service_state(downstream.client, downstream.base_urls[name]) for name in names)
    )
    for name, state in zip(names, states, strict=True):
        downstream.readiness_checked(name, state)
    return dict(zip(names, states, strict=True))


async def every_service_ready(app: FastAPI) -> bool:
    """The check of /health/ready, for the `service_ready` metric."""
    downstream: Downstream = app.state.downstream
    return all(state == "ok" for state in (await service_states(downstream)).values())
