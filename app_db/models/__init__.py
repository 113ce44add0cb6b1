"""SQLModel classes that are both Pydantic schemas and tables."""

from app_db.models.base import NAMING_CONVENTION, AppModel, metadata
from app_db.models.columns import created_at_field, id_field, updated_at_field
from app_db.models.customer import (
    Customer,
    CustomerCreate,
    CustomerName,
    CustomerRead,
    CustomerUpdate,
    Phone,
)
from app_db.models.session import Session, SessionCreate, SessionRead, SessionUpdate
from app_db.models.throttle import Throttle
from app_db.models.token import OneTimeToken
from app_db.models.types import Email, TZDateTime, uuid7
from app_db.models.user import DisplayName, User, UserCreate, UserRead, UserUpdate

__all__ = [
    "NAMING_CONVENTION",
    "AppModel",
    "Customer",
    "CustomerCreate",
    "CustomerName",
    "CustomerRead",
    "CustomerUpdate",
    "DisplayName",
    "Email",
    "OneTimeToken",
    "Phone",
    "Session",
    "SessionCreate",
    "SessionRead",
    "SessionUpdate",
    "TZDateTime",
    "Throttle",
    "User",
    "UserCreate",
    "UserRead",
    "UserUpdate",
    "created_at_field",
    "id_field",
    "metadata",
    "updated_at_field",
    "uuid7",
]
