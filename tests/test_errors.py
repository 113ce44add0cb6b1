"""Every constraint of the schema maps to a typed error, chosen by its name alone."""

import pytest
from sqlalchemy import CheckConstraint, ForeignKeyConstraint, UniqueConstraint

from app_db.errors import (
    ConflictError,
    DuplicateEmailError,
    InvalidInputError,
    NotFoundError,
    error_for_constraint,
)
from app_db.models import metadata


def named_constraints() -> list[tuple[str, str, set[str]]]:
    found: list[tuple[str, str, set[str]]] = []
    for table in metadata.sorted_tables:
        columns = set(table.columns.keys())
        kinds = CheckConstraint | ForeignKeyConstraint | UniqueConstraint
        found.extend(
            (str(c.name), table.name, columns) for c in table.constraints if isinstance(c, kinds)
        )
        found.extend((str(i.name), table.name, columns) for i in table.indexes if i.unique)
    return found


@pytest.mark.parametrize(("name", "table", "columns"), named_constraints())
def test_each_constraint_has_a_typed_error(name: str, table: str, columns: set[str]) -> None:
    error = error_for_constraint(name)

    assert isinstance(error, InvalidInputError | ConflictError | NotFoundError), name
    if isinstance(error, InvalidInputError):
        assert error.field in columns, f"{name} names no column of {table}"


def test_specific_mappings() -> None:
    assert isinstance(error_for_constraint("uq_users_email_lower"), DuplicateEmailError)
    assert isinstance(error_for_constraint("fk_sessions_user_id_users"), NotFoundError)
    assert error_for_constraint("some_other_constraint") is None
    assert error_for_constraint(None) is None


def test_invalid_input_error_says_where() -> None:
    error = InvalidInputError("not a valid email", field="email", position=3)

    assert str(error) == "row 3, field 'email': not a valid email"
    assert (error.field, error.position) == ("email", 3)
