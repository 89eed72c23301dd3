"""The gateway is one client of the services for every caller: it keeps no cookies for them."""

from collections.abc import Callable

import pytest
from fastapi import FastAPI, Request, Response

from gateway_service.main import create_app
from gateway_service.settings import GatewaySettings
from servicekit.testing import asgi_client, running, serving

GatewaySettingsFactory = Callable[..., GatewaySettings]


def _service_setting_cookies() -> FastAPI:
    app = FastAPI()

    @app.get("/users/{user_id:int}")
    async def user(user_id: int, request: Request, response: Response) -> dict[str, object]:
        response.set_cookie("session", f"of-user-{user_id}")
        return {"id": user_id, "cookie_received": request.headers.get("cookie")}

    return app


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_cookie_a_service_sets_is_neither_kept_nor_passed_on(
    gateway_settings: GatewaySettingsFactory, transport: str
) -> None:
    with serving(_service_setting_cookies()) as url:
        # A host name, not an address: cookie jars keep cookies only for names.
        users_url = url.replace("127.0.0.1", "localhost")
        app = create_app(gateway_settings(users_url=users_url, http_transport=transport))
        async with running(app), asgi_client(app) as gateway:
            first = await gateway.get("/users/1")
            second = await gateway.get("/users/2")

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json() == {"id": 2, "cookie_received": None}
    assert "set-cookie" not in first.headers
