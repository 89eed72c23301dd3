"""Uniqueness holds when many clients write at the same instant."""

import asyncio

import httpx

PASSWORD = "correct horse battery"


async def test_a_dozen_simultaneous_creates_of_one_email_give_one_user(
    client: httpx.AsyncClient,
) -> None:
    emails = ["race@example.com", "RACE@example.com", "Race@Example.com"] * 4

    responses = await asyncio.gather(
        *(
            client.post("/users/", json={"email": email, "name": "Racer", "password": PASSWORD})
            for email in emails
        )
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 11
    assert (await client.get("/users/stats")).json()["total_users"] == 1


async def test_simultaneous_patches_with_the_same_if_match_let_exactly_one_win(
    client: httpx.AsyncClient,
) -> None:
    user = (
        await client.post(
            "/users/", json={"email": "a@example.com", "name": "A", "password": PASSWORD}
        )
    ).json()

    responses = await asyncio.gather(
        *(
            client.patch(
                f"/users/{user['id']}", json={"name": f"N{i}"}, headers={"If-Match": '"1"'}
            )
            for i in range(8)
        )
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses[0] == 200
    assert statuses.count(200) == 1
    assert set(statuses[1:]) == {412}  # however the race fell: their version was stale
    assert (await client.get(f"/users/{user['id']}")).json()["version"] == 2
