"""The start-up heap stays out of the cyclic collector's passes while an app serves."""

import gc

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import URL

from app_db import heap
from app_db.fastapi import lifespan
from app_db.fastapi.database import STATE
from tests.conftest import DATABASE_VARIABLES


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def collected_when_dropped() -> bool:
    """Make a cycle, drop it, collect: say whether the collector found it."""
    gc.collect()
    Node()
    return gc.collect() >= 1


def test_frozen_objects_wait_for_the_last_block_to_end() -> None:
    gc.unfreeze()  # Python 3.12.1 starts with 375 objects frozen: begin with none, as 3.11 does
    assert gc.get_freeze_count() == 0
    assert collected_when_dropped()
    with heap.frozen():
        kept = Node()
        with heap.frozen():
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() > 0  # an inner block ending gives back nothing
        del kept
        assert gc.collect() == 0  # a frozen cycle is not collected while a block runs
        assert collected_when_dropped()  # one made since is
    assert gc.get_freeze_count() == 0  # everything goes back, what was frozen before too
    assert gc.collect() >= 1  # the frozen cycle, collected once the block ended


async def test_an_app_serves_with_its_heap_frozen(
    empty_database: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in DATABASE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", empty_database.render_as_string(hide_password=False))
    app = FastAPI(lifespan=lifespan)
    async with lifespan(app):
        assert gc.get_freeze_count() > 10_000  # the modules, the models, the engine
        sessionmaker = getattr(app.state, STATE)
        async with sessionmaker() as db:
            assert await db.scalar(text("SELECT 1")) == 1
    assert gc.get_freeze_count() == 0
