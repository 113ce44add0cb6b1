"""Benchmarks of app_db's hot paths against raw asyncpg, measured in the same run."""
