"""A hung service: once the gateway knows it, its clients get a 503 at once, while the other
services' clients are served as before; and it is served again by itself once it answers.

The users service is hung for real: its process is stopped (SIGSTOP), so it still accepts
connections but answers nothing, as a deadlocked or overloaded process would.
"""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import httpx
import pytest
from fastapi import FastAPI

from servicekit.testing import METRICS_CREDENTIAL, Scrape, ServiceProcess, poll

ServeGateway = Callable[..., AbstractContextManager[tuple[str, FastAPI]]]
CALLS = "gateway_downstream_requests_total"
CIRCUIT_STATE = "gateway_downstream_circuit_state"
CLOSED, OPEN = 0, 1
# How soon a refusal must come: well under the read timeout the refused call would have waited.
AT_ONCE = 1.0
PAUSED = "calls to the users service are paused: it has been failing"
TOO_MANY = "the users service has too many calls in flight"


def scrape(url: str) -> Scrape:
    response = httpx.get(f"{url}/metrics", headers=METRICS_CREDENTIAL, timeout=10)
    assert response.status_code == 200, response.text
    return Scrape.parse(response.text)


def users_check(url: str) -> str:
    state: str = httpx.get(f"{url}/health/ready", timeout=15).json()["checks"]["users"]
    return state


def timed_get(url: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.get(url, timeout=30)
    return response, time.monotonic() - started


def at_once(url: str, count: int) -> list[tuple[httpx.Response, float]]:
    """`count` GETs of `url` sent at the same time, each on a connection of its own."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(timed_get, [url] * count))


def assert_refused_at_once(
    answer: tuple[httpx.Response, float], detail: str, retry_after_at_most: float
) -> None:
    response, seconds = answer
    assert (response.status_code, response.json()) == (503, {"detail": detail})
    assert 1 <= int(response.headers["Retry-After"]) <= retry_after_at_most
    assert seconds < AT_ONCE


def assert_served_at_once(answer: tuple[httpx.Response, float]) -> None:
    response, seconds = answer
    assert (response.status_code, seconds < AT_ONCE) == (200, True), response.text


def test_once_a_hung_service_s_circuit_opens_its_clients_get_503_at_once(
    serve_gateway: ServeGateway, services: dict[str, ServiceProcess]
) -> None:
    with serve_gateway(read_timeout=5, circuit_failures=3, circuit_cooldown=2) as (url, _):
        with services["users"].paused():
            timed_out = at_once(f"{url}/users/", 3)
            listed = timed_get(f"{url}/users/")
            composed = timed_get(f"{url}/users-with-posts")
            catalog = timed_get(f"{url}/categories/")
            while_open = scrape(url)
        poll(lambda: timed_get(f"{url}/users/")[0].status_code, lambda s: s == 200, 20, "users")
        after = scrape(url)

    assert [response.status_code for response, _ in timed_out] == [504, 504, 504]
    for answer in listed, composed:
        assert_refused_at_once(answer, PAUSED, retry_after_at_most=2)
    assert_served_at_once(catalog)
    assert while_open.value(CIRCUIT_STATE, service="users") == OPEN
    assert while_open.value(CIRCUIT_STATE, service="catalog") == CLOSED
    assert while_open.value(CALLS, service="users", outcome="timeout") == 3
    assert while_open.value(CALLS, service="users", outcome="open") == 2
    assert after.value(CIRCUIT_STATE, service="users") == CLOSED


def test_a_readiness_check_opens_the_circuit_of_a_hung_service_and_ends_it_once_it_is_back(
    serve_gateway: ServeGateway, services: dict[str, ServiceProcess]
) -> None:
    # The default read timeout (10 s), and a cool-down longer than the test.
    with serve_gateway(circuit_cooldown=120) as (url, _):
        with services["users"].paused():
            not_ready = httpx.get(f"{url}/health/ready", timeout=15)
            listed = timed_get(f"{url}/users/")
            catalog = timed_get(f"{url}/categories/")
        poll(lambda: users_check(url), lambda state: state == "ok", 20, "users' readiness")
        served_again = httpx.get(f"{url}/users/", timeout=15)

    assert (not_ready.status_code, not_ready.json()["checks"]["users"]) == (503, "timeout")
    assert_refused_at_once(listed, PAUSED, retry_after_at_most=120)
    assert_served_at_once(catalog)
    assert served_again.status_code == 200


@pytest.mark.parametrize("queue_timeout", [0, 0.2])
def test_calls_beyond_a_service_s_limit_get_503_at_once_and_other_services_are_served(
    serve_gateway: ServeGateway, services: dict[str, ServiceProcess], queue_timeout: float
) -> None:
    limits = {"max_calls_per_service": 2, "queue_timeout": queue_timeout, "read_timeout": 5}
    with serve_gateway(**limits) as (url, app), ThreadPoolExecutor(2) as stalled_calls:
        sent: list[httpx.Request] = []
        app.state.downstream.listeners.append(sent.append)
        with services["users"].paused():
            stalled = [stalled_calls.submit(timed_get, f"{url}/users/") for _ in range(2)]
            poll(lambda: len(sent), lambda count: count == 2, 10, "calls in flight")
            beyond = at_once(f"{url}/users/", 3)
            catalog = timed_get(f"{url}/categories/")
        answered = [call.result()[0] for call in stalled]
        metrics = scrape(url)

    for answer in beyond:
        assert_refused_at_once(answer, TOO_MANY, retry_after_at_most=1)
        assert answer[1] >= queue_timeout
    assert_served_at_once(catalog)
    assert [response.status_code for response in answered] == [200, 200]
    assert [request.url.path for request in sent] == ["/users/", "/users/", "/categories/"]
    assert metrics.value(CALLS, service="users", outcome="shed") == 3
