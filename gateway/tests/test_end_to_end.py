"""The whole system started the way the README says (`make run`), driven as a client would."""

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from servicekit.testing import free_port

REPOSITORY = Path(__file__).parents[2]
PROCESSES = ("users", "catalog", "blog", "gateway")
STARTUP_TIMEOUT = 180.0


def _is_listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class System:
    """`make run` in a process group of its own, on fresh embedded databases and free ports."""

    def __init__(self, data: Path, log: Path) -> None:
        self.ports = {name: free_port() for name in PROCESSES}
        self.url = f"http://127.0.0.1:{self.ports['gateway']}"
        self.log = log
        env = {**os.environ}
        for name in PROCESSES:
            env[f"{name.upper()}_PORT"] = str(self.ports[name])
        for name in PROCESSES[:-1]:
            env[f"{name.upper()}_DATABASE_URL"] = f"sqlite+aiosqlite:///{data}/{name}.db"
            env[f"GATEWAY_{name.upper()}_URL"] = f"http://127.0.0.1:{self.ports[name]}"
        # On the default ports these are the defaults; the users service makes its key file.
        jwks_url = f"http://127.0.0.1:{self.ports['users']}/.well-known/jwks.json"
        env["CATALOG_AUTH_JWKS_URL"] = env["BLOG_AUTH_JWKS_URL"] = jwks_url
        env["BLOG_EVENTS_URL"] = f"http://127.0.0.1:{self.ports['users']}/events"
        env["USERS_SIGNING_KEYS_FILE"] = str(data / "signing-keys.json")
        self.env = env
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                ["make", "run"],  # noqa: S607 - the README's command, found on PATH as a user would
                cwd=REPOSITORY,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"make run exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the system was not ready in time:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def make_admin(self, email: str, password: str) -> None:
        """`make admin`, as the README says, on the running system's users database."""
        subprocess.run(
            ["make", "admin", f"EMAIL={email}", f"PASSWORD={password}"],  # noqa: S607
            cwd=REPOSITORY,
            env=self.env,
            check=True,
            capture_output=True,
        )

    def interrupt(self) -> int:
        """Press Ctrl-C: SIGINT to the whole process group, as a terminal sends it."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    running = System(tmp_path, tmp_path / "make-run.log")
    try:
        running.wait_until_ready()
        yield running
    finally:
        running.kill()


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _sign_up(client: httpx.Client, name: str) -> dict[str, Any]:
    email, password = f"{name.lower()}@example.com", f"{name} is my password"
    user = _created(
        client.post("/users/", json={"email": email, "name": name, "password": password})
    )
    return {**user, "headers": _log_in(client, email, password)}


def _log_in(client: httpx.Client, email: str, password: str) -> dict[str, str]:
    answer = client.post("/auth/token", data={"username": email, "password": password})
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_a_client_uses_the_whole_system_through_the_gateway(system: System) -> None:
    system.make_admin("root@example.com", "the admin's password")
    with httpx.Client(base_url=system.url, timeout=10) as client:
        ada = _sign_up(client, "Ada")
        bob = _sign_up(client, "Bob")
        client.headers.update(_log_in(client, "root@example.com", "the admin's password"))
        assert client.get("/users/me").json()["is_admin"] is True

        lamps = _created(client.post("/categories/", json={"name": "Lamps"}))
        lamp = {"category_id": lamps["id"], "stock_quantity": 2}
        products = client.post(
            "/products/bulk",
            json=[
                {**lamp, "name": "Desk lamp", "price": "19.90"},
                {**lamp, "name": "Floor lamp", "price": "89.00"},
            ],
        )
        assert products.status_code == 201, products.text
        cheap = client.get("/products/", params={"category_id": lamps["id"], "max_price": "20"})
        assert [p["name"] for p in cheap.json()] == ["Desk lamp"]
        desk_lamp = cheap.json()[0]["id"]
        sale = client.post(f"/products/{desk_lamp}/stock-adjustments", json={"delta": -2})
        assert (sale.status_code, sale.json()["stock_quantity"]) == (200, 0)
        oversold = client.post(f"/products/{desk_lamp}/stock-adjustments", json={"delta": -1})
        assert oversold.status_code == 409

        post = _created(
            client.post(
                f"/users/{ada['id']}/posts",
                json={"title": "Notes", "content": "On the engine.", "tags": ["Math", "math "]},
                headers=ada["headers"],
            )
        )
        assert post["tags"] == ["math"]
        _created(
            client.post(
                f"/posts/{post['id']}/comments", json={"content": "Bravo"}, headers=bob["headers"]
            )
        )
        impostor = client.post(
            f"/posts/{post['id']}/comments",
            json={"author_id": ada["id"], "content": "I am Ada"},
            headers=bob["headers"],
        )
        assert impostor.status_code == 403
        assert (
            client.post("/categories/", json={"name": "X"}, headers=bob["headers"]).status_code
            == 403
        )
        people = httpx.get(f"{system.url}/users-with-posts").json()  # anonymous
        assert all("email" not in person for person in people)
        head = client.head("/users-with-posts")
        assert (head.status_code, head.content) == (200, b"")
        assert [(u["name"], [p["title"] for p in u["posts"]]) for u in people] == [
            ("root", []),
            ("Ada", ["Notes"]),
            ("Bob", []),
        ]
        expanded = client.get(f"/posts/{post['id']}", params={"expand": "author,comments"}).json()
        assert expanded["author"]["name"] == "Ada"
        assert [c["author"]["name"] for c in expanded["comments"]] == ["Bob"]

        assert client.delete(f"/users/{ada['id']}", headers=bob["headers"]).status_code == 403
        assert client.delete(f"/users/{ada['id']}", headers=ada["headers"]).status_code == 204
        # Blog erases what Ada wrote once it applies the deletion, moments later.
        deadline = time.monotonic() + 15
        while client.get(f"/posts/{post['id']}").status_code != 404:
            assert time.monotonic() < deadline, "Ada's post outlived her"
            time.sleep(0.05)
        after_deletion = client.post(
            "/posts/", json={"title": "Ghost", "content": "?"}, headers=ada["headers"]
        )
        assert (after_deletion.status_code, after_deletion.json()) == (
            404,
            {"detail": f"user {ada['id']} not found"},
        )

        ready = client.get("/health/ready")
        assert (ready.status_code, ready.json()["checks"]) == (
            200,
            dict.fromkeys(PROCESSES[:-1], "ok"),
        )
        assert "/users-with-posts" in client.get("/openapi.json").json()["paths"]

    system.interrupt()

    assert [name for name, port in system.ports.items() if _is_listening(port)] == []
