"""One engine per event loop for the test fixtures, disposed when that loop shuts down.

pytest-asyncio and AnyIO run tests on loops of a scope the project chooses (a loop per test,
per module or per session). Pooled asyncpg connections belong to the loop that opened them, so
each loop gets its own engine, kept while the loop lives. An async generator parked in the loop
disposes of it: the loop's runner closes every such generator as it shuts down.
"""

import asyncio
import weakref
from collections.abc import AsyncIterator

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from app_db.engine import create_engine, dispose
from app_db.testing.server import settings_for

_engines: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Kept]]"
_engines = weakref.WeakKeyDictionary()


class _Kept:
    __slots__ = ("engine", "keeper")

    def __init__(self, engine: AsyncEngine, keeper: AsyncIterator[None]) -> None:
        self.engine = engine
        self.keeper = keeper


async def engine_for_running_loop(url: URL) -> AsyncEngine:
    """Return the engine on ``url`` for the running loop, built by ``create_engine``."""
    per_url = _engines.setdefault(asyncio.get_running_loop(), {})
    key = url.render_as_string(hide_password=False)
    kept = per_url.get(key)
    if kept is None:
        engine = create_engine(settings_for(url))
        keeper = _dispose_when_the_loop_ends(engine)
        await anext(keeper)
        kept = per_url[key] = _Kept(engine, keeper)
    return kept.engine


async def _dispose_when_the_loop_ends(engine: AsyncEngine) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await dispose(engine)
