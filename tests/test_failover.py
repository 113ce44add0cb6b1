"""Failover on a real pair behind libpq's multi-host URL: the primary stops at once, the standby
is promoted, writes resume, nothing acknowledged is lost, and the old primary, back as a
standalone server (a split brain), is fenced off."""

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from app_db import (
    CustomerCreate,
    DatabaseUnavailableError,
    Settings,
    create_engine,
    create_sessionmaker,
    customers,
    transaction,
)
from app_db.cluster import connect
from app_db.engine import dispose
from app_db.testing.replication import ReplicatedPair
from tests.replicas import on_node

pytestmark = [pytest.mark.slow, pytest.mark.timed, pytest.mark.xdist_group("servers")]
WRITERS = 4


async def test_writes_move_to_the_promoted_standby_and_never_to_the_old_primary(
    own_replicated: ReplicatedPair,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, new = own_replicated.primary, own_replicated.standby
    url = f"postgresql://postgres@127.0.0.1:{old.port},127.0.0.1:{new.port}/postgres"
    engine = create_engine(Settings(_env_file=None, database_url=SecretStr(url)))
    maker = create_sessionmaker(engine)
    acknowledged: list[tuple[float, uuid.UUID]] = []
    refused: list[BaseException] = []
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        while not stop.is_set():
            try:
                async with transaction(maker) as db:
                    created = await customers.create(db, CustomerCreate(name=f"writer {n}"))
                acknowledged.append((time.monotonic(), created.id))
            except DatabaseUnavailableError as exc:
                refused.append(exc)
                await asyncio.sleep(0.02)

    # Synchronous replication, as the failover page advises for no loss: asynchronous
    # replication may lose a commit that the old primary acknowledged but had not yet sent
    # (PostgreSQL's behaviour, seen once in about 30 runs here), which no client can prevent.
    await asyncio.to_thread(old.configure, synchronous_standby_names="*")
    writers = [asyncio.create_task(writer(n)) for n in range(WRITERS)]
    try:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(old.stop, "immediate")
        await asyncio.sleep(0.5)
        await asyncio.to_thread(new.promote)
        promoted_at = time.monotonic()
        async with asyncio.timeout(10):
            while not any(at > promoted_at for at, _ in acknowledged):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        resumed_after = min(at for at, _ in acknowledged if at > promoted_at) - promoted_at
        await asyncio.sleep(0.5)

        await asyncio.to_thread(old.start)  # a standalone primary again, on the old timeline
        await asyncio.to_thread(old.configure)  # alone: a write it took would not wait
        restarted = datetime.now(UTC)
        # Its failure to connect is forgotten: it is tried first again, as it is listed.
        monkeypatch.setattr(connect, "TRIED_LAST_FOR", 0.0)
        for _ in range(3):  # ordinary turnover: every connection is made anew
            await engine.dispose()
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*writers)
        await dispose(engine)

    ids = [row_id for _, row_id in acknowledged]
    kept = await on_node(new.dsn, "SELECT count(*) FROM customers WHERE id = ANY($1)", ids)
    split = await on_node(
        old.dsn, "SELECT count(*) FROM customers WHERE created_at >= $1", restarted
    )
    print(  # noqa: T201 - the figures the docs quote
        f"\nfailover: writes resumed {resumed_after * 1000:.0f} ms after the promote; "
        f"{len(ids)} acknowledged, {len(ids) - kept} lost; {split} written to the old primary; "
        f"{len(refused)} refused while no primary answered"
    )
    assert resumed_after < 5.0
    assert kept == len(ids)
    assert split == 0
    fenced = [r for r in caplog.records if r.name == "app_db.cluster.fencing"]
    assert [(r.levelno, f"refused 127.0.0.1:{old.port}" in r.getMessage()) for r in fenced] == [
        (logging.ERROR, True)
    ]
    caplog.clear()
