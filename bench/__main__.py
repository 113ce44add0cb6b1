"""Run the benchmarks: ``uv run python -m bench`` (``--smoke`` for a tiny, quick run).

Every figure is measured in this run against raw asyncpg doing the same SQL with the same
pool size and concurrency (ratio 1.0); the naive SQLModel ORM version is the second reference.
"""

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from app_db import coalesce, create_engine, create_sessionmaker
from app_db.testing import settings_for
from app_db.testing.server import find_test_server
from bench import http, overhead, pgbench, search, suite
from bench.database import create_database, describe_server, plain_dsn, seed
from bench.harness import Series, latencies, percentile, throughput
from bench.lookups import WORKLOADS

VARIANTS = ("raw", "lib", "orm")
WARM_UP_ROUNDS = 2
"""Untimed rounds before the timed ones, so that every pooled backend is warm. One is not
enough: the ORM variant, which runs after app_db's, opens the engine's other connections, and
a new backend ran app_db's coalesced batches at about half speed for its first few dozen
(1.2-1.7 ms a batch against 0.65 ms, measured per connection; forcing generic plans did not
change it, so it is more than the five custom plans before a generic one). Timed, that made
app_db's first rounds at concurrency 32 run at 16-23 thousand validate calls a second against
29-30 thousand after."""
POOL_CONFIGS: dict[str, dict[str, int]] = {
    # The library's defaults (DATABASE_POOL_SIZE 10, DATABASE_MAX_OVERFLOW 5): what users run.
    "default pool": {},
    "no overflow": {"max_overflow": 0},
}


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check it runs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=3000, help="operations per measure")
    parser.add_argument("--json", type=Path, default=Path("bench/results/latest.json"))
    parser.add_argument("--skip-suite", action="store_true", help="skip workload 6")
    parser.add_argument("--skip-bulk", action="store_true", help="skip workload 5")
    parser.add_argument("--skip-search", action="store_true", help="skip workload 7")
    parser.add_argument("--skip-http", action="store_true", help="skip workload 8 (needs wrk)")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(WORKLOADS),
        help="only this lookup workload (repeatable), at the default pool and concurrency 32, "
        "without the pgbench and observability references: for A/B runs of one change",
    )
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.ops = 1, 60
    return args


async def lookups(
    dsn: str, settings: Any, data: Any, args: argparse.Namespace
) -> list[dict[str, Any]]:
    results = []
    configs = list(POOL_CONFIGS.items())[:1] if args.only else POOL_CONFIGS.items()
    for config, options in configs:
        engine = create_engine(settings, **options)
        size = settings.database_pool_size
        cap = size + options.get("max_overflow", settings.database_max_overflow)
        pool = await asyncpg.create_pool(dsn, min_size=size, max_size=cap)
        label = f"{config} {size}+{cap - size}"
        try:
            results += await _lookups(pool, engine, data, args, label)
        finally:
            await pool.close()
            await engine.dispose()
    return results


async def _lookups(
    pool: Any, engine: Any, data: Any, args: argparse.Namespace, label: str
) -> list[dict[str, Any]]:
    """Measure every workload against raw asyncpg capped at the engine's connection limit."""
    maker = create_sessionmaker(engine)
    results = []
    for name, build in WORKLOADS.items():
        if args.only and name not in args.only:
            continue
        variants = build(pool, engine, maker, data)
        for concurrency in (32,) if args.only else (1, 32):
            total = args.ops if concurrency > 1 else max(args.ops // 3, 20)
            series = {v: Series() for v in VARIANTS}
            for _ in range(WARM_UP_ROUNDS):  # untimed
                for variant in VARIANTS:
                    operation = getattr(variants, variant)
                    await throughput(operation, total=total, concurrency=concurrency)
            seen_before = _batches(engine)
            for _ in range(args.rounds):
                for variant in VARIANTS:
                    operation = getattr(variants, variant)
                    series[variant].values.append(
                        await throughput(operation, total=total, concurrency=concurrency)
                    )
            row = summary(name, f"c={concurrency}, {label}", series)
            row["batches"] = _batches(engine)[len(seen_before) :]
            results.append(row)
        if name == "sessions.validate" and not args.only:
            results.append(await latency(variants, args, label))
    return results


def _batches(engine: Any) -> list[int]:
    """Return the sizes of every coalesced batch sent on ``engine`` so far, in order."""
    return [size for sizes in coalesce.batch_sizes(engine).values() for size in sizes]


async def latency(variants: Any, args: argparse.Namespace, label: str) -> dict[str, Any]:
    p50 = {v: Series() for v in VARIANTS}
    p99 = {v: Series() for v in VARIANTS}
    for _ in range(args.rounds):
        for variant in VARIANTS:
            measured = await latencies(getattr(variants, variant), total=args.ops, concurrency=64)
            p50[variant].values.append(percentile(measured, 0.50))
            p99[variant].values.append(percentile(measured, 0.99))
    return {
        "workload": "sessions.validate",
        "measure": f"p50 ms, 64 tasks, {label}",
        "p50": {v: p50[v].median for v in VARIANTS},
        "p99": {v: p99[v].median for v in VARIANTS},
        "p99_spread": {v: p99[v].spread for v in VARIANTS},
        "ratio_p99": p99["lib"].median / p99["raw"].median,
    }


def summary(name: str, measure: str, series: dict[str, Series]) -> dict[str, Any]:
    raw = series["raw"].median
    return {
        "workload": name,
        "measure": measure,
        "ops_per_s": {v: s.median for v, s in series.items()},
        "spread": {v: s.spread for v, s in series.items()},
        "ratio": {v: s.median / raw for v, s in series.items()},
    }


async def reference(dsn: str, data: Any, args: argparse.Namespace) -> dict[str, float]:
    """Return pgbench's rate for each lookup it can run (none when pgbench is missing)."""
    binary = pgbench.find()
    if binary is None or args.smoke or args.only:
        return {}
    scripts = await pgbench.prepare(dsn, data.tokens, data.emails)
    return {name: pgbench.run(binary, dsn, script) for name, script in scripts.items()}


def bulk(dsn: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    plans = (
        [(mode, 2000) for mode in ("raw", "lib", "lib-scoped", "lib-checked")] + [("orm", 500)]
        if args.smoke
        else [
            ("raw", 100_000),
            ("lib", 100_000),
            ("lib-scoped", 100_000),
            ("lib-checked", 100_000),
            ("lib-checked-owned", 100_000),
            ("lib-checked-scoped", 100_000),
            ("orm", 20_000),
            ("raw", 1_000_000),
            ("lib", 1_000_000),
            ("lib-scoped", 1_000_000),
        ]
    )
    results = []
    for mode, rows in plans:
        done = subprocess.run(
            [sys.executable, "-m", "bench.bulk", mode, str(rows), dsn],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append({"mode": mode, "rows": rows, **json.loads(done.stdout)})
    return results


async def end_to_end(server: Any, args: argparse.Namespace) -> list[dict[str, Any]] | str:
    """Workload 8 (``bench.http``), in a thread: it drives processes and waits on them."""
    if shutil.which("wrk") is None:
        return "skipped: wrk is not installed (apt-get install wrk)"
    return await asyncio.to_thread(http.run, server, smoke=args.smoke)


def print_report(report: dict[str, Any]) -> None:
    out = sys.stdout.write
    out(f"\napp_db benchmarks, {report['date']}, {report['machine']}, {report['server']}\n")
    out(f"{report['rounds']} rounds per figure (median; spread = min..max of app_db)\n\n")
    out(
        f"{'workload':30} {'measure':32} {'raw/s':>8} {'app_db/s':>9} {'ratio':>6} "
        f"{'ORM/s':>8} {'ratio':>6}  app_db spread\n"
    )
    for row in report["lookups"]:
        if "ops_per_s" in row:
            ops, ratio, low_high = row["ops_per_s"], row["ratio"], row["spread"]["lib"]
            out(
                f"{row['workload']:30} {row['measure']:32} {ops['raw']:8.0f} {ops['lib']:9.0f} "
                f"{ratio['lib']:6.2f} {ops['orm']:8.0f} {ratio['orm']:6.2f}  "
                f"{low_high[0]:.0f}..{low_high[1]:.0f}\n"
            )
            if row.get("batches"):
                sizes = row["batches"]
                out(
                    f"{'':30} {'  coalesced batches':32} {len(sizes):8d} of mean size "
                    f"{sum(sizes) / len(sizes):.1f}, largest {max(sizes)}\n"
                )
        else:
            out(
                f"{row['workload']:30} {row['measure']:32} "
                f"{row['p50']['raw']:8.2f} {row['p50']['lib']:9.2f} {'':6} "
                f"{row['p50']['orm']:8.2f}\n"
            )
            out(
                f"{'':30} {'  p99 ms (raw/app_db/ORM)':32} {row['p99']['raw']:8.2f} "
                f"{row['p99']['lib']:9.2f} {row['ratio_p99']:6.2f} {row['p99']['orm']:8.2f}\n"
            )
    if report["pgbench"]:
        out(
            f"\nthe C-client reference: pgbench -M prepared -c {pgbench.CLIENTS} -j 1, one "
            "statement per lookup, against app_db at c=32 (default pool)\n"
        )
    for name, tps in report["pgbench"].items():
        ours = next(
            row["ops_per_s"]["lib"]
            for row in report["lookups"]
            if row["workload"] == name and row["measure"].startswith("c=32, default")
        )
        out(f"  {name:28} pgbench {tps:8.0f}/s   app_db {ours:8.0f}/s = {ours / tps:.2f} of it\n")
    if report["overhead"] is not None:
        out(overhead.report(report["overhead"]))
    out("\nbulk import (one process each; rows/s, peak memory growth)\n")
    raw_rate = {r["rows"]: r["rows_per_s"] for r in report["bulk"] if r["mode"] == "raw"}
    reference = max(raw_rate) if raw_rate else None
    rates = {(r["mode"], r["rows"]): r["rows_per_s"] for r in report["bulk"]}
    for r in report["bulk"]:
        base = raw_rate.get(r["rows"]) or (raw_rate[min(raw_rate)] if raw_rate else None)
        ratio = f"{r['rows_per_s'] / base:.2f}x raw" if base else ""
        plain = rates.get((r["mode"].removesuffix("-scoped"), r["rows"]))
        owned = rates.get((r["mode"].replace("-scoped", "-owned"), r["rows"]))
        versus_lib = ""
        if r["mode"].endswith("-scoped") and plain:
            versus_lib = f"  {r['rows_per_s'] / plain:.2f}x unscoped"
        if r["mode"].endswith("-scoped") and owned:
            versus_lib += f", {r['rows_per_s'] / owned:.2f}x unscoped owned rows"
        out(
            f"  {r['mode']:15} {r['rows']:>9} rows {r['rows_per_s']:>10.0f} rows/s "
            f"{ratio:>10} {r['peak_growth_mb']:7.1f} MB{versus_lib}\n"
        )
    del reference
    search.print_rows(report["search"])
    out(http.report(report["http"]))
    if "suite" in report:
        s = report["suite"]
        out(f"\ntest isolation: {s['fixture_overhead_ms']:.2f} ms per test")
        if "wall_time_s" in s:
            out(f"; full suite {s['wall_time_s']:.1f} s ({s['last_line']})")
        out("\n")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = find_test_server()
    try:
        url = await create_database(server)
        try:
            sizes = (200, 500) if args.smoke else (10_000, 20_000)
            data = await seed(url, users=sizes[0], customers=sizes[1], signed_in=sizes[0])
            settings = settings_for(url)
            report: dict[str, Any] = {
                "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                f"{platform.python_version()}",
                "server": describe_server(server),
                "rounds": args.rounds,
                "lookups": await lookups(plain_dsn(url), settings, data, args),
                "pgbench": await reference(plain_dsn(url), data, args),
                "overhead": None
                if args.only
                else await overhead.measure(
                    url, data.tokens, rounds=args.rounds + 2, ops=args.ops * 2
                ),
                "bulk": [] if args.skip_bulk else bulk(plain_dsn(url), args),
                "search": [] if args.skip_search else await search.run(server, smoke=args.smoke),
                "http": None if args.skip_http or args.only else await end_to_end(server, args),
            }
        finally:
            await server.drop_database(url)
    finally:
        server.close()
    return report


def main() -> None:
    args = parse()
    report = asyncio.run(run(args))
    if not args.skip_suite:
        report["suite"] = {"fixture_overhead_ms": suite.fixture_overhead_ms()}
        if not args.smoke:
            wall, last = suite.suite_wall_time_s()
            report["suite"] |= {"wall_time_s": wall, "last_line": last}
    print_report(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    sys.stdout.write(f"\nwritten: {args.json}\n")


if __name__ == "__main__":
    main()
