"""``@public`` without an SDK: the path every user without OpenTelemetry runs (the suite keeps
spans, so its other tests run the traced path)."""

import asyncio

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import DuplicateEmailError, NotFoundError, users
from app_db.models import UserCreate
from app_db.observe import otel, spans
from app_db.observe.spans import public
from tests.factories import PASSWORD, make_user


@pytest.fixture
def no_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otel, "tracing_on", lambda: False)


@pytest.fixture
def naming(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spans, "naming_calls", True)


@pytest.fixture
def not_naming(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spans, "naming_calls", False)  # until an engine logs slow statements


@public
async def names_itself() -> str | None:
    return spans.current_call.get()


@public
async def fails(error: BaseException) -> None:
    assert spans.current_call.get() == "tests.test_public.fails"
    raise error


@pytest.mark.usefixtures("no_spans")
async def test_an_expected_database_failure_leaves_as_its_typed_error(
    db_session: AsyncSession,
) -> None:
    await make_user(db_session, "taken@example.com")
    with pytest.raises(DuplicateEmailError) as raised:
        await users.create(
            db_session,
            UserCreate.model_validate({"email": "Taken@example.com", "password": PASSWORD}),
        )
    assert isinstance(raised.value.__cause__, IntegrityError)


@pytest.mark.usefixtures("no_spans", "naming")
async def test_other_errors_leave_unchanged_and_the_call_is_named_only_while_it_runs() -> None:
    assert await names_itself() == "tests.test_public.names_itself"
    assert spans.current_call.get() is None
    error = ValueError("the caller's own")
    with pytest.raises(ValueError, match="the caller's own") as raised:
        await fails(error)
    assert raised.value is error
    assert raised.value.__cause__ is None
    assert spans.current_call.get() is None


@pytest.mark.usefixtures("no_spans", "naming")
async def test_app_db_errors_and_cancellation_leave_unchanged_and_unnamed() -> None:
    typed = NotFoundError("user", "42")
    with pytest.raises(NotFoundError) as raised:
        await fails(typed)
    assert raised.value is typed
    assert raised.value.__cause__ is None  # not raised from itself
    with pytest.raises(asyncio.CancelledError):
        await fails(asyncio.CancelledError())
    assert spans.current_call.get() is None


@pytest.mark.usefixtures("no_spans", "not_naming")
async def test_a_call_is_not_named_when_no_slow_log_asks() -> None:
    assert await names_itself() is None
