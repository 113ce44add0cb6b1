"""What observability costs with no OpenTelemetry SDK configured: ``validate`` at concurrency 32.

"shipped" is the library as installed (the ``otel`` extra's API present, no SDK set up);
"bare" is the same engine settings with every hook removed: the span wrapper, the caller
context and batch-size hooks of coalescing, the slow-statement check, and the pool subclass
that counts timeouts. Both run in the same process, in interleaved rounds.
``uv run python -m bench.overhead`` runs it alone.
"""

import asyncio
import contextlib
import statistics
from collections.abc import Iterator
from typing import Any

from sqlalchemy.pool import AsyncAdaptedQueuePool

from app_db import create_engine, create_sessionmaker, sessions, transaction
from app_db.engine import dispose
from app_db.errors import typed_errors
from app_db.observe import otel, slow, spans
from app_db.testing.plugin import settings_for
from app_db.testing.server import find_test_server
from bench.database import POLICY, create_database, seed
from bench.harness import throughput

CONCURRENCY = 32


@contextlib.contextmanager
def bare() -> Iterator[None]:
    """Remove every observability hook from the validate path, for the block."""
    removed: list[tuple[Any, str, Any]] = [
        # the call without its span or name, with its typed errors
        (sessions, "validate", typed_errors(sessions.validate.__wrapped__)),  # type: ignore[attr-defined]
        (spans, "caller", lambda: None),
        (spans, "batch_span", lambda *_: None),
        (otel, "record_batch", lambda *_: None),
        (slow, "threshold", lambda _: None),
    ]
    saved = [(module, name, getattr(module, name)) for module, name, _ in removed]
    for module, name, value in removed:
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


async def measure(url: Any, tokens: list[str], *, rounds: int, ops: int) -> dict[str, Any]:
    """Return the shipped and bare rates (medians) and their ratio."""
    settings = settings_for(url)
    shipped_engine = create_engine(settings)
    bare_engine = create_engine(settings, poolclass=AsyncAdaptedQueuePool)
    rates: dict[str, list[float]] = {"shipped": [], "bare": []}
    try:
        variants: dict[str, tuple[Any, Any]] = {
            "shipped": (create_sessionmaker(shipped_engine), contextlib.nullcontext),
            "bare": (create_sessionmaker(bare_engine), bare),
        }
        for round_number in range(rounds + 1):  # the first round warms up, untimed
            for name, (maker, hooks) in variants.items():

                async def validate(i: int, maker: Any = maker) -> object:
                    async with transaction(maker) as db:
                        return await sessions.validate(db, tokens[i % len(tokens)], settings=POLICY)

                with hooks():
                    rate = await throughput(validate, total=ops, concurrency=CONCURRENCY)
                if round_number:
                    rates[name].append(rate)
    finally:
        await dispose(shipped_engine)
        await dispose(bare_engine)
    shipped, plain = statistics.median(rates["shipped"]), statistics.median(rates["bare"])
    return {
        "shipped": shipped,
        "bare": plain,
        "ratio": shipped / plain,
        "spread": {name: (min(values), max(values)) for name, values in rates.items()},
        "sdk": otel.tracing_on() or otel.metrics_on(),
    }


def report(result: dict[str, Any]) -> str:
    cost = (1 - result["ratio"]) * 100
    low, high = result["spread"]["shipped"]
    return (
        f"\nobservability without an SDK: validate at c={CONCURRENCY}, shipped "
        f"{result['shipped']:.0f}/s ({low:.0f}..{high:.0f}) vs bare {result['bare']:.0f}/s: "
        f"ratio {result['ratio']:.3f} ({cost:+.1f}% cost)\n"
    )


async def _main() -> None:
    server = find_test_server()
    try:
        url = await create_database(server)
        try:
            data = await seed(url, users=10_000, customers=100)
            result = await measure(url, data.tokens, rounds=7, ops=6000)
        finally:
            await server.drop_database(url)
    finally:
        server.close()
    print(report(result))


if __name__ == "__main__":
    asyncio.run(_main())
