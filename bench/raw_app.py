"""The reference for the HTTP workload: the example app's two routes on a raw asyncpg pool.

``GET /me`` and ``GET /customers`` do what the example app's do: find the live session of
the ``__Host-session`` cookie (touching it when due, the same statement as the library
workloads' raw variant), answer 401 without one, and return the user, or the user's first
page of customers with its cursor. No ORM, no validation on the way out, no middleware:
the fastest app one would write by hand with FastAPI. Served by ``bench.http`` with uvicorn
(``BENCH_DSN`` names the database).
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException, Request

from app_db.pagination import encode_cursor
from app_db.security.tokens import hash_token, is_well_formed
from app_db.sessions import default_settings
from bench.lookups import RAW_VALIDATE

USER_FIELDS = (
    "id",
    "email",
    "display_name",
    "is_active",
    "verified_at",
    "created_at",
    "updated_at",
)
CUSTOMER_FIELDS = ("name", "email", "phone", "owner_id", "id", "created_at", "updated_at")
PAGE = "SELECT * FROM customers WHERE owner_id = $1 ORDER BY created_at, id LIMIT 51"
POOL: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:  # noqa: ARG001
    # The library's default pool: 10 connections and 5 more under load.
    POOL["pool"] = await asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=10, max_size=15)
    try:
        yield
    finally:
        await POOL["pool"].close()


app = FastAPI(lifespan=lifespan)


async def _user(connection: asyncpg.Connection, request: Request) -> dict[str, Any]:
    token = request.cookies.get("__Host-session")
    if not token or not is_well_formed(token):
        raise HTTPException(401, "not logged in")
    policy = default_settings()
    row = await connection.fetchrow(
        RAW_VALIDATE,
        hash_token(token),
        policy.idle_timeout,
        policy.max_lifetime,
        policy.touch_interval,
    )
    if row is None:
        raise HTTPException(401, "not logged in")
    return {name: row[f"u_{name}"] for name in USER_FIELDS}


@app.get("/me")
async def me(request: Request) -> dict[str, Any]:
    async with POOL["pool"].acquire() as connection:
        return await _user(connection, request)


@app.get("/customers")
async def customers(request: Request) -> dict[str, Any]:
    async with POOL["pool"].acquire() as connection:
        user = await _user(connection, request)
        rows = await connection.fetch(PAGE, user["id"])
    items = [{name: row[name] for name in CUSTOMER_FIELDS} for row in rows[:50]]
    last = rows[49] if len(rows) > 50 else None
    cursor = encode_cursor(last["created_at"], last["id"]) if last is not None else None
    return {"items": items, "next_cursor": cursor}
