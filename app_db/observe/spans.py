"""One span per public API call, ``app_db.<module>.<function>``, and one per coalesced batch.

Public API coroutines are decorated with ``public``: their span, their name for the
slow-statement log (``current_call``) and their typed errors (``app_db.errors``).

A call's span carries ``db.system.name``, ``app_db.outcome`` (``found``, ``not_found`` or the
error's class name) and, for calls that return many rows, ``app_db.rows``. Statement spans of
the asyncpg instrumentation nest under it. A coalesced batch runs in a task of its own: its
span (``app_db.coalesce.batch``, with ``app_db.batch.size``) is the child of its caller when
it serves one, else a root linked to each caller's span. No argument,
result value or exception message ever becomes an attribute: only names and counts do.
"""

import contextvars
import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

from app_db.errors import raise_translated, typed_errors
from app_db.observe import otel

P = ParamSpec("P")
R = TypeVar("R")

current_call: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "app_db_call", default=None
)
"""The public API call running in this context, for the slow-statement log."""
naming_calls = False
"""Whether ``current_call`` is kept: ``create_engine`` turns it on for the slow-statement log."""


def public(
    function: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Run a public API coroutine in its span, ``<module>.<function>``, when spans are kept,
    with app_db's typed errors for expected database failures (``app_db.errors``)."""
    return _traced(function, name=f"{function.__module__}.{function.__name__}", typed=True)


def traced_as(
    name: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Run a public API coroutine in a span of this name (where it is public) when spans are
    kept, its errors as they are (``public`` makes them typed)."""
    return functools.partial(_traced, name=name, typed=False)


def _traced(
    function: Callable[P, Coroutine[Any, Any, R]], *, name: str, typed: bool
) -> Callable[P, Coroutine[Any, Any, R]]:
    # Without spans, the call, its name and its typed errors take this one frame: a frame costs
    # about 2 µs a call on the benchmark's 2-core machine, and a request makes a few calls.
    in_span = typed_errors(function) if typed else function  # the span sees the typed error

    @functools.wraps(function)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        tracing = otel.tracing_on()
        token = current_call.set(name) if naming_calls or tracing else None
        try:
            if not tracing:
                try:
                    return await function(*args, **kwargs)
                except BaseException as error:
                    if typed:
                        raise_translated(error)
                    raise
            with otel.tracer().start_as_current_span(
                name,
                attributes=otel.DB_SYSTEM,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    result = await in_span(*args, **kwargs)
                except BaseException as exc:
                    failed(span, exc)
                    raise
                span.set_attributes(_described(result))
                return result
        finally:
            if token is not None:
                current_call.reset(token)

    return wrapper


def failed(span: Any, error: BaseException) -> None:
    """Mark a span failed with the error's class name, never its message."""
    from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415 - tracing is on

    kind = type(error).__name__
    span.set_attribute("app_db.outcome", kind)
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, kind))  # the class only: messages may hold data


def _described(result: object) -> dict[str, Any]:
    if result is None or result is False:
        return {"app_db.outcome": "not_found"}
    described: dict[str, Any] = {"app_db.outcome": "found"}
    items = getattr(result, "items", None)  # a Page
    if isinstance(items, Sequence):
        described["app_db.rows"] = len(items)
    elif isinstance(result, list):
        described["app_db.rows"] = len(result)
    elif isinstance(result, int) and not isinstance(result, bool):
        described["app_db.rows"] = result  # bulk_import, revoke_all, purge_expired: a count
    return described


def caller() -> Any:
    """Return the span context of the calling task's span, when spans are recorded."""
    if not otel.tracing_on():
        return None
    from opentelemetry import trace  # noqa: PLC0415 - tracing is on

    context = trace.get_current_span().get_span_context()
    return context if context.is_valid else None


def batch_span(lookup: str, size: int, callers: Sequence[Any]) -> Any:
    """Start the span of one coalesced batch; ``None`` when no SDK records spans.

    A batch that serves one caller is that caller's child, so a lone request stays one tree.
    A batch that serves several is a root of its own, linked to each caller's span.
    """
    if not otel.tracing_on():
        return None
    from opentelemetry import trace  # noqa: PLC0415 - tracing is on

    alone = len(callers) == 1 and callers[0] is not None
    return otel.tracer().start_as_current_span(
        "app_db.coalesce.batch",
        context=trace.set_span_in_context(trace.NonRecordingSpan(callers[0])) if alone else None,
        attributes={**otel.DB_SYSTEM, "app_db.lookup": lookup, "app_db.batch.size": size},
        links=[] if alone else [trace.Link(context) for context in callers if context is not None],
        record_exception=False,
        set_status_on_exception=False,
    )
