"""Customers: CRUD, cursor pages and CSV import, each scoped to the logged-in user's own
customers (``OwnedDb``): another user's customer is not found, and cannot be made."""

import asyncio
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import SkipJsonSchema

from app_db import (
    CustomerCreate,
    CustomerRead,
    CustomerUpdate,
    NotFoundError,
    Page,
    customers,
)
from app_db.example.csv_upload import COLUMNS, ImportTimeout, read_customers
from app_db.fastapi import OwnedDb, error_responses
from app_db.models import CustomerName, Email, Phone

customer_routes = APIRouter(prefix="/customers", tags=["customers"])
uploads = APIRouter(prefix="/customers", tags=["customers"])  # with a larger body limit


class Imported(BaseModel):
    imported: int


class NewCustomer(BaseModel):
    """A customer of the logged-in user: the owner is never the client's to name."""

    model_config = ConfigDict(extra="forbid")

    name: CustomerName
    email: Email | None = None
    phone: Phone | None = None


class CustomerChange(BaseModel):
    """The fields to change; ``null`` removes an email or phone (a name stays)."""

    model_config = ConfigDict(extra="forbid")

    name: CustomerName | SkipJsonSchema[None] = None
    email: Email | None = None
    phone: Phone | None = None


Limit = Annotated[int, Query(ge=1, le=customers.MAX_PAGE_SIZE, description="customers per page")]
Cursor = Annotated[
    str | None,
    Query(pattern=customers.CURSOR_PATTERN, description="the next_cursor of the page before"),
]
Search = Annotated[
    str | None,
    Query(
        max_length=customers.MAX_SEARCH_LENGTH,
        pattern="^[^\\u0000]*$",
        description="a part of the name or email, in any letter case",
    ),
]


@customer_routes.get("")
async def list_customers(
    db: OwnedDb, limit: Limit = 50, cursor: Cursor = None, search: Search = None
) -> Page[CustomerRead]:
    page = await customers.list(db, limit=limit, cursor=cursor, search=search)
    items = [CustomerRead.model_validate(c) for c in page.items]
    return Page[CustomerRead](items=items, next_cursor=page.next_cursor)


@customer_routes.post("", status_code=201)
async def create_customer(body: NewCustomer, db: OwnedDb) -> CustomerRead:
    created = await customers.create(db, CustomerCreate.model_validate(body.model_dump()))
    return CustomerRead.model_validate(created)


@customer_routes.get("/{customer_id:uuid}", responses=error_responses(404))
async def get_customer(customer_id: uuid.UUID, db: OwnedDb) -> CustomerRead:
    customer = await customers.get(db, customer_id)
    if customer is None:
        raise NotFoundError("customer", customer_id)
    return CustomerRead.model_validate(customer)


@customer_routes.patch("/{customer_id:uuid}", responses=error_responses(404))
async def update_customer(
    customer_id: uuid.UUID, body: CustomerChange, db: OwnedDb
) -> CustomerRead:
    changes = CustomerUpdate.model_validate(body.model_dump(exclude_unset=True))
    return CustomerRead.model_validate(await customers.update(db, customer_id, changes))


@customer_routes.delete("/{customer_id:uuid}", status_code=204, responses=error_responses(404))
async def delete_customer(customer_id: uuid.UUID, db: OwnedDb) -> None:
    if not await customers.delete(db, customer_id):
        raise NotFoundError("customer", customer_id)


CsvFile = Annotated[
    UploadFile,
    File(
        description="UTF-8 CSV; its header names the columns: name (required), and any of "
        f"{', '.join(c for c in COLUMNS if c != 'name')} (owner_id: yours, or left empty)"
    ),
]


@uploads.post("/import")
async def import_customers(file: CsvFile, request: Request, db: OwnedDb) -> Imported:
    """Load a CSV file through COPY, every row the logged-in user's; a bad line refuses it all
    (422, naming the line).

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
