"""Concurrent lookups by key, sent as one statement per batch (the DataLoader pattern).

A lookup that may borrow a pooled connection (see ``fastpath.borrowable``) joins the batch of
its engine, event loop and kind. The first caller starts a batch at once; callers that arrive
while batches are in flight wait for the next one, so a lone request never waits for company.
Each batch is one statement, ``unnest($1::<type>[]) WITH ORDINALITY`` joined to the table, of at
most ``DATABASE_COALESCE_MAX_BATCH`` keys (a batch of one sends the one-key statement), and
every caller gets its own row (or ``None``) as if it had run alone under READ COMMITTED. An
error reaches every caller of the batch, typed; a cancelled caller leaves the batch and the
others alone. When the only batch in flight comes back, half its callers resume a loop turn
later than the others, so that two batches overlap: one on the server while the process works
on the other's callers. Inside a transaction that holds a connection, behind PgBouncer, or
with ``DATABASE_COALESCE_MAX_BATCH=0``, lookups run one statement each, as before.
"""

import asyncio
import contextvars
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
from app_db.cluster.routing import replica_for
from app_db.errors import typed_error
from app_db.lazy_session import built
from app_db.observe import otel, spans
from app_db.rows import Row

COALESCE = "app_db_coalesce_max_batch"
"""The engine execution option that ``create_engine`` sets: the largest batch, 0 for none."""
BATCHES_IN_FLIGHT = 4
SPLIT_FROM = 8
M = TypeVar("M", bound=SQLModel)


@dataclass(frozen=True)
class Lookup:
    """A kind of lookup: the statement for one key, and the one for a batch of keys."""

    name: str
    one_sql: str
    """``$1`` is the key."""
    batch_sql: str
    """``$1`` is the array of keys; each row carries ``n``, its key's 1-based position."""
    args: tuple[object, ...] = ()
    """The same further arguments of both statements, from ``$2`` on."""


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


PLANNED_KEYS = 10
"""The keys a batch's array holds at least, padded with nulls (which match no row).

PostgreSQL's generic plan of a prepared statement guesses 10 elements for an array
parameter; a custom plan counts them. For a smaller batch the custom plan looks cheaper, so
PostgreSQL would plan the statement again at every call instead of keeping its generic plan.
"""

_Waiting = tuple[object, "asyncio.Future[Any]", Any]
"""A caller's key, the future it awaits, and its span's context (``None`` untraced)."""


class _Batcher:
    """The batches of one lookup on one engine, in one event loop."""

    __slots__ = ("_engine", "_in_flight", "_lookup", "_max_batch", "_pending", "_tasks", "sizes")

    def __init__(self, engine: AsyncEngine, lookup: Lookup, max_batch: int) -> None:
        self._engine = engine
        self._lookup = lookup
        self._max_batch = max_batch
        self._pending: list[_Waiting] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.sizes: list[int] = []  # batch sizes seen, for the benchmark and the tests

    async def get(self, key: object) -> Row | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((key, future, spans.caller()))
        if self._in_flight < BATCHES_IN_FLIGHT:
            self._in_flight += 1
            # A context of its own: the batch serves many calls, not the first caller's.
            task = loop.create_task(self._run(), context=contextvars.Context())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        row: Row | None = await future
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

    async def _send(self, batch: list[_Waiting]) -> None:
        self.sizes.append(len(batch))
        otel.record_batch(len(batch), self._lookup.name)
        opened = spans.batch_span(self._lookup.name, len(batch), [entry[2] for entry in batch])
        try:
            if opened is None:
                found = await self._query(batch)
            else:
                with opened as span:
                    try:
                        found = await self._query(batch)
                    except Exception as exc:
                        spans.failed(span, exc)
                        raise
        except Exception as exc:  # every caller gets it, typed
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(_typed(exc))
            return
        if self._in_flight > 1 or len(batch) < SPLIT_FROM:
            _answer(batch, found, 1)
            return
        # The only batch in flight: half its callers resume now and half a loop turn later.
        # The first half's next lookups then go out as a batch while the second half still
        # runs, so the server and this process work at the same time instead of in turn.
        half = len(batch) // 2
        _answer(batch[:half], found, 1)
        asyncio.get_running_loop().call_soon(_answer, batch[half:], found, half + 1)

    async def _query(self, batch: list[_Waiting]) -> dict[int, Any]:
        lookup = self._lookup
        if spans.naming_calls:  # the batch task's own context: what the slow log names
            spans.current_call.set(f"a coalesced batch of {len(batch)} {lookup.name} lookups")
        if len(batch) == 1:  # the one-key statement: a plan of its own, no array
            rows = await fastpath.run_borrowed(
                self._engine, lookup.one_sql, (batch[0][0], *lookup.args)
            )
            return {1: rows[0]} if rows else {}
        keys = [entry[0] for entry in batch]
        if len(keys) < PLANNED_KEYS:  # the generic plan's size: see PLANNED_KEYS
            keys += [None] * (PLANNED_KEYS - len(keys))
        rows = await fastpath.run_borrowed(self._engine, lookup.batch_sql, (keys, *lookup.args))
        return {row["n"]: row for row in rows}


def _answer(batch: list[_Waiting], found: dict[int, Any], first: int) -> None:
    for n, (_, future, _) in enumerate(batch, first):
        if not future.done():
            future.set_result(found.get(n))


def _typed(error: Exception) -> BaseException:
    typed = typed_error(error)
    if typed is None or typed is error:
        return error
    typed.__cause__ = error  # as ``raise typed from error`` would
    return typed


_PerLoop = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, "_Batcher | None"]]
_batchers: weakref.WeakKeyDictionary[Engine, _PerLoop] = weakref.WeakKeyDictionary()
_last: list[tuple[Any, Any, dict[str, "_Batcher | None"]]] = []
"""The last engine and loop asked for, weakly, and their batchers: most calls ask for them."""


def _of(engine: Engine) -> dict[str, "_Batcher | None"]:
    loop = asyncio.get_running_loop()
    if _last:
        engine_ref, loop_ref, found = _last[0]
        if engine_ref() is engine and loop_ref() is loop:
            return found
    per_loop = _batchers.get(engine)
    if per_loop is None:
        per_loop = _batchers[engine] = weakref.WeakKeyDictionary()
    found = per_loop.setdefault(loop, {})
    _last[:] = [(weakref.ref(engine), weakref.ref(loop), found)]
    return found


def batch_sizes(engine: AsyncEngine) -> dict[str, list[int]]:
    """Return the sizes of the batches each lookup sent on ``engine`` in the running loop."""
    found = _of(engine.sync_engine)
    return {name: kind.sizes for name, kind in found.items() if kind is not None}


def batcher(engine: AsyncEngine, lookup: Lookup) -> _Batcher | None:
    """Return the running loop's batcher of ``lookup`` on ``engine``, or ``None`` when off."""
    per_lookup = _of(engine.sync_engine)
    try:
        return per_lookup[lookup.name]
    except KeyError:
        max_batch = engine.sync_engine.get_execution_options().get(COALESCE, 0)
        found = _Batcher(engine, lookup, max_batch) if max_batch else None
        per_lookup[lookup.name] = found
        return found


async def fetchrow(
    db: AsyncSession, lookup: Lookup, key: object, *, read_only: bool = False
) -> Row | None:
    """Return the row for ``key``: in a batch when the session may borrow, else on its own."""
    if not fastpath.has_pending(db):
        engine = fastpath.borrowable(db)
        if engine is not None:
            found = batcher(engine, lookup)
            if found is not None:
                replica = replica_for(db, engine) if read_only else None
                if replica is None:
                    return await found.get(key)
                return await fastpath.on_engines(
                    engine, lambda chosen: get_borrowed(chosen, lookup, key), replica
                )
    return await fastpath.fetchrow(db, lookup.one_sql, key, *lookup.args, read_only=read_only)


async def get_borrowed(engine: AsyncEngine, lookup: Lookup, key: object) -> Row | None:
    """Return the row for ``key`` on a pooled connection of ``engine``: batched when it may."""
    found = batcher(engine, lookup)
    if found is None:  # a replica engine built without coalescing
        rows: Sequence[Row] = await fastpath.run_borrowed(
            engine, lookup.one_sql, (key, *lookup.args)
        )
        return rows[0] if rows else None
    return await found.get(key)


async def get_into(db: AsyncSession, model: type[M], lookup: Lookup, key: object) -> M | None:
    """Return the session's instance for ``key``, else load it (batched) into the session."""
    sync = built(db)
    held = None if sync is None else sync.identity_map.get(identity_key(model, key))
    if held is not None and not inspect(held).expired_attributes:
        found: M = held  # as ``db.get`` does: no query for what the session holds, unexpired
        return found
    row = await fetchrow(db, lookup, key)
    return None if row is None else loaded_into(db, model, row)


def loaded_into(db: AsyncSession, model: type[M], row: Row) -> M:
    """Return the instance for a row, joined to the session (persistent: no INSERT follows)."""
    instance = fastpath.load(db, model, row)
    if instance not in db:
        db.add(instance)
    return instance
