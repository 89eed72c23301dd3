"""The application factory's parts: the route table and garbage collection for serving."""

import gc

from fastapi import APIRouter, FastAPI

from servicekit.serving import SERVING_GC_THRESHOLDS, collector_tuned_for_serving, include_routes
from servicekit.testing import asgi_client


async def test_included_routes_are_served_and_documented_from_the_apps_own_table() -> None:
    router = APIRouter(prefix="/things", tags=["things"])

    @router.get("/{thing_id:int}")
    async def get_thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    app = FastAPI()
    include_routes(app, router)

    assert router.routes[0] in app.router.routes
    async with asgi_client(app) as client:
        assert (await client.get("/things/7")).json() == {"id": 7}
        assert (await client.get("/things/x")).status_code == 404
        document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/things/{thing_id}"]["get"]
    assert operation["tags"] == ["things"]


def test_a_serving_process_freezes_its_startup_objects_and_collects_less_often() -> None:
    thresholds = gc.get_threshold()
    alive = [object()]

    with collector_tuned_for_serving():
        assert gc.get_freeze_count() > 0
        assert not any(item is alive for item in gc.get_objects())  # out of every generation
        assert gc.get_threshold() == SERVING_GC_THRESHOLDS

    assert gc.get_freeze_count() == 0
    assert any(item is alive for item in gc.get_objects())
    assert gc.get_threshold() == thresholds
