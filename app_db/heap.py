"""What a process built at start-up, kept out of the cyclic garbage collector's passes.

An app on app_db holds a large heap of long-lived objects once it has started: the modules
of SQLAlchemy, SQLModel, pydantic and the web framework, the models' mappers and schemas,
the engine. Python's cyclic garbage collector walks every one of them at each full
collection. A server making garbage per request runs one every thousand requests or so:
with the example app, 37 in 45,000 requests over a heap of 125,000 objects, which cost each
request 80-115 µs, a quarter to two fifths of its CPU, on the benchmark's machine. ``frozen()``
moves what exists when it starts into the permanent generation (``gc.freeze()``), after
a collection, and moves it back when the last ``frozen()`` block ends.

Reference counting frees frozen objects as it always does; only a reference cycle among
them, broken after start-up, waits until the block ends to be collected. ``lifespan`` of
``app_db.fastapi`` runs the app inside ``frozen()``. To keep the collector walking
everything, call ``gc.unfreeze()`` in a lifespan of your own, inside it.

``gc.unfreeze()`` gives back everything frozen, so the last block's end also gives back what
was frozen before the first began: the few hundred objects that Python 3.12.1 freezes at
start-up, or a heap that a server froze before forking its workers (at the app's shutdown).
An app started and stopped many times in one process (a test suite) then frees, at each
stop, the cycles it broke while it ran.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_holders = [0]


@contextmanager
def frozen() -> Iterator[None]:
    """Collect, then keep every object alive now out of the collector's passes, for the block."""
    gc.collect()
    gc.freeze()
    _holders[0] += 1
    try:
        yield
    finally:
        _holders[0] -= 1
        if not _holders[0]:
            gc.unfreeze()
