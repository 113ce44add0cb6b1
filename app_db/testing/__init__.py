"""Test support for app_db and for applications built on it (the ``app_db`` pytest plugin)."""

from app_db.testing.server import NoTestServerError, TestServer, find_test_server, settings_for

__all__ = ["NoTestServerError", "TestServer", "find_test_server", "settings_for"]
