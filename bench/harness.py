"""Timing: throughput at a given concurrency, latency percentiles, medians over rounds."""

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Operation = Callable[[int], Awaitable[object]]


@dataclass
class Series:
    """Repeated measures of one variant of one workload."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.values), max(self.values)


async def throughput(operation: Operation, *, total: int, concurrency: int) -> float:
    """Run ``total`` operations from ``concurrency`` tasks; return operations per second."""
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            await operation(i)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for _ in range(concurrency):
            tasks.create_task(worker())
    return total / (time.perf_counter() - started)


async def latencies(operation: Operation, *, total: int, concurrency: int) -> list[float]:
    """Run ``total`` operations from ``concurrency`` tasks; return each one's latency (ms)."""
    counter = iter(range(total))
    measured: list[float] = []

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            await operation(i)
            measured.append((time.perf_counter() - started) * 1000)

    async with asyncio.TaskGroup() as tasks:
        for _ in range(concurrency):
            tasks.create_task(worker())
    return measured


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
