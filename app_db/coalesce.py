"""Concurrent lookups by key, sent as one statement per batch (the DataLoader pattern).

A lookup that may borrow a pooled connection (see ``fastpath.borrowable``) joins the batch of
its engine, event loop and kind. The first caller starts a batch at once; callers that arrive
while batches are in flight wait for the next one, so a lone request never waits for company.
Each batch is one statement, ``unnest($1::<type>[]) WITH ORDINALITY`` joined to the table, of at
most ``DATABASE_COALESCE_MAX_BATCH`` keys, and every caller gets its own row (or ``None``) as if
it had run alone under READ COMMITTED. An error reaches every caller of the batch, typed; a
cancelled caller leaves the batch and the others alone. Inside a transaction that holds a
connection, behind PgBouncer, or with ``DATABASE_COALESCE_MAX_BATCH=0``, lookups run one
statement each, as before.
"""

import asyncio
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, inspect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm.util import identity_key
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import fastpath
from app_db.errors import typed_error

COALESCE = "app_db_coalesce_max_batch"
"""The engine execution option that ``create_engine`` sets: the largest batch, 0 for none."""
BATCHES_IN_FLIGHT = 4
M = TypeVar("M", bound=SQLModel)


@dataclass(frozen=True)
class Lookup:
    """A kind of lookup: the statement for one key, and the one for a batch of keys."""

    name: str
    one_sql: str
    """``$1`` is the key."""
    batch_sql: str
    """``$1`` is the array of keys; each row carries ``n``, its key's 1-based position."""


def by_key(name: str, table: str, columns: Sequence[str], key: str, key_type: str) -> Lookup:
    """Build the lookup of one row of ``table`` by the ``key`` expression, a value of a type."""
    listed = ", ".join(f"t.{column}" for column in columns)
    return Lookup(
        name=name,
        one_sql=f"SELECT {listed} FROM {table} AS t WHERE {key.format('$1')}",  # noqa: S608
        batch_sql=(
            f"SELECT q.n, {listed} FROM unnest($1::{key_type}[]) WITH ORDINALITY AS q(key, n)"  # noqa: S608
            f" JOIN {table} AS t ON {key.format('q.key')}"
        ),
    )


class _Batcher:
    """The batches of one lookup on one engine, in one event loop."""

    __slots__ = ("_engine", "_in_flight", "_lookup", "_max_batch", "_pending", "_tasks", "sizes")

    def __init__(self, engine: AsyncEngine, lookup: Lookup, max_batch: int) -> None:
        self._engine = engine
        self._lookup = lookup
        self._max_batch = max_batch
        self._pending: list[tuple[object, asyncio.Future[Any]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.sizes: list[int] = []  # batch sizes seen, for the benchmark and the tests

    async def get(self, key: object) -> fastpath.Row | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((key, future))
        if self._in_flight < BATCHES_IN_FLIGHT:
            self._in_flight += 1
            task = loop.create_task(self._run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        row: fastpath.Row | None = await future
        return row

    async def _run(self) -> None:
        try:
            while self._pending:
                batch = [entry for entry in self._pending[: self._max_batch] if not entry[1].done()]
                del self._pending[: self._max_batch]
                if batch:
                    await self._send(batch)
        finally:
            self._in_flight -= 1

    async def _send(self, batch: list[tuple[object, asyncio.Future[Any]]]) -> None:
        self.sizes.append(len(batch))
        keys = [key for key, _ in batch]
        try:
            rows = await fastpath.run_borrowed(self._engine, self._lookup.batch_sql, (keys,))
        except Exception as exc:  # every caller gets it, typed
            for _, future in batch:
                if not future.done():
                    future.set_exception(_typed(exc))
            return
        found = {row["n"]: row for row in rows}
        for n, (_, future) in enumerate(batch, 1):
            if not future.done():
                row = found.get(n)
                future.set_result(None if row is None else _without_n(row))


def _typed(error: Exception) -> BaseException:
    typed = typed_error(error)
    if typed is None or typed is error:
        return error
    typed.__cause__ = error  # as ``raise typed from error`` would
    return typed


def _without_n(row: fastpath.Row) -> dict[str, Any]:
    return {name: value for name, value in row.items() if name != "n"}


_batchers: "weakref.WeakKeyDictionary[Engine, dict[asyncio.AbstractEventLoop, dict[str, _Batcher]]]"
_batchers = weakref.WeakKeyDictionary()


def batch_sizes(engine: AsyncEngine) -> dict[str, list[int]]:
    """Return the sizes of the batches each lookup sent on ``engine`` in the running loop."""
    per_loop = _batchers.get(engine.sync_engine, {})
    return {
        name: found.sizes for name, found in per_loop.get(asyncio.get_running_loop(), {}).items()
    }


def batcher(engine: AsyncEngine, lookup: Lookup) -> _Batcher | None:
    """Return the running loop's batcher of ``lookup`` on ``engine``, or ``None`` when off."""
    max_batch = engine.sync_engine.get_execution_options().get(COALESCE, 0)
    if not max_batch:
        return None
    per_loop = _batchers.setdefault(engine.sync_engine, {})
    per_lookup = per_loop.setdefault(asyncio.get_running_loop(), {})
    found = per_lookup.get(lookup.name)
    if found is None:
        found = per_lookup[lookup.name] = _Batcher(engine, lookup, max_batch)
    return found


async def fetchrow(
    db: AsyncSession, lookup: Lookup, key: object, *, read_only: bool = False
) -> fastpath.Row | None:
    """Return the row for ``key``: in a batch when the session may borrow, else on its own."""
    if not (db.new or db.dirty or db.deleted):
        engine = fastpath.borrowable(db)
        if engine is not None and batcher(engine, lookup) is not None:
            return await fastpath.on_engines(
                engine, lambda chosen: _get(chosen, lookup, key), read_only
            )
    return await fastpath.fetchrow(db, lookup.one_sql, key, read_only=read_only)


async def _get(engine: AsyncEngine, lookup: Lookup, key: object) -> fastpath.Row | None:
    found = batcher(engine, lookup)
    if found is None:  # a replica engine built without coalescing
        rows: Sequence[fastpath.Row] = await fastpath.run_borrowed(engine, lookup.one_sql, (key,))
        return rows[0] if rows else None
    return await found.get(key)


async def get_into(db: AsyncSession, model: type[M], lookup: Lookup, key: object) -> M | None:
    """Return the session's instance for ``key``, else load it (batched) into the session."""
    held = db.sync_session.identity_map.get(identity_key(model, key))
    if held is not None and not inspect(held).expired_attributes:
        found: M = held  # as ``db.get`` does: no query for what the session holds, unexpired
        return found
    row = await fetchrow(db, lookup, key)
    if row is None:
        return None
    instance = fastpath.load(db, model, dict(row.items()))
    if instance not in db:
        db.add(instance)  # persistent already: it joins the session, with no INSERT
    return instance
