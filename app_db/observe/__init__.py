"""What app_db tells about itself in production: spans, metrics, pool numbers, slow statements.

- ``stats``: the pool's numbers as plain values (``app_db.pool_stats``), with or without
  OpenTelemetry.
- ``otel``: the OpenTelemetry API when the ``app-db[otel]`` extra is installed, and whether an
  SDK is listening; the metrics instruments read ``stats``.
- ``spans``: one span per public API call, and one per coalesced batch.
- ``slow``: ``DATABASE_SLOW_STATEMENT_MS``, a WARNING for each statement slower than that.
"""
