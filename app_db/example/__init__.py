"""The example app that ``app-db dev`` serves: a FastAPI app on app_db, shipped in the wheel."""

from app_db.example.app import create_app
from app_db.example.settings import MIB, ExampleSettings
from app_db.fastapi import COOKIE

__all__ = ["COOKIE", "MIB", "ExampleSettings", "create_app"]
