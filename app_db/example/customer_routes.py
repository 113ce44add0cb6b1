"""Customers: CRUD, cursor pages and CSV import, each scoped to the logged-in user's own
customers (``OwnedDb``): another user's customer is not found, and cannot be made."""

import asyncio
import time
import uuid

from fastapi import APIRouter, Request, UploadFile
from pydantic import BaseModel

from app_db import (
    CustomerCreate,
    CustomerRead,
    CustomerUpdate,
    NotFoundError,
    Page,
    customers,
)
from app_db.example.csv_upload import ImportTimeout, read_customers
from app_db.fastapi import OwnedDb, error_responses

customer_routes = APIRouter(prefix="/customers", tags=["customers"])
uploads = APIRouter(prefix="/customers", tags=["customers"])  # with a larger body limit


class Imported(BaseModel):
    imported: int


@customer_routes.get("")
async def list_customers(
    db: OwnedDb,
    limit: int = 50,
    cursor: str | None = None,
    search: str | None = None,
) -> Page[CustomerRead]:
    page = await customers.list(db, limit=limit, cursor=cursor, search=search)
    items = [CustomerRead.model_validate(c) for c in page.items]
    return Page[CustomerRead](items=items, next_cursor=page.next_cursor)


@customer_routes.post("", status_code=201)
async def create_customer(body: CustomerCreate, db: OwnedDb) -> CustomerRead:
    return CustomerRead.model_validate(await customers.create(db, body))


@customer_routes.get("/{customer_id}", responses=error_responses(404))
async def get_customer(customer_id: uuid.UUID, db: OwnedDb) -> CustomerRead:
    customer = await customers.get(db, customer_id)
    if customer is None:
        raise NotFoundError("customer", customer_id)
    return CustomerRead.model_validate(customer)


@customer_routes.patch("/{customer_id}", responses=error_responses(404))
async def update_customer(
    customer_id: uuid.UUID, body: CustomerUpdate, db: OwnedDb
) -> CustomerRead:
    return CustomerRead.model_validate(await customers.update(db, customer_id, body))


@customer_routes.delete("/{customer_id}", status_code=204, responses=error_responses(404))
async def delete_customer(customer_id: uuid.UUID, db: OwnedDb) -> None:
    if not await customers.delete(db, customer_id):
        raise NotFoundError("customer", customer_id)


@uploads.post("/import")
async def import_customers(file: UploadFile, request: Request, db: OwnedDb) -> Imported:
    """Load a CSV file (header: name,email,phone) through COPY; a bad line refuses it all (422).

    Every row is checked in a worker thread before the COPY takes a pooled connection, so the
    connection is held for the COPY alone. The whole import must end within the time limit.
    """
    limit = request.app.state.settings.import_timeout
    deadline = time.monotonic() + limit
    rows = await asyncio.to_thread(read_customers, file.file, deadline=deadline)
    copy_time = asyncio.timeout(deadline - time.monotonic())
    try:
        async with copy_time:
            count = await customers.bulk_import(db, (row.customer() for row in rows))
    except TimeoutError:
        if copy_time.expired():
            raise ImportTimeout from None
        raise  # PoolTimeoutError or StatementTimeoutError: their own handler
    return Imported(imported=count)
