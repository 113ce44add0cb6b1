"""Run the plugin's async fixtures on the event loop of the test that asks for them.

Two pytest plugins run async tests: pytest-asyncio (every async test in its auto mode, the
tests marked ``asyncio`` in strict mode) and AnyIO's (tests marked ``@pytest.mark.anyio``,
FastAPI's way). Both also take over async fixtures, and when both are installed either may
grab a fixture for a test that the other one runs, which puts the fixture on another loop.
So the plugin hands its own async fixtures over itself, as plain generators:

- to pytest-asyncio, as a fixture of its own: it sets its loop as the current one, and the
  fixture runs there;
- to AnyIO's test runner for the test's ``anyio_backend``, whatever that fixture's scope.

The fixtures are function-scoped, so no scope of either runner's loop can clash with them.
"""

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from inspect import isasyncgenfunction
from typing import Any

import pytest

HAVE_PYTEST_ASYNCIO = importlib.util.find_spec("pytest_asyncio") is not None

NO_RUNNER = (
    "app_db's async fixtures need a test runner: mark the test @pytest.mark.anyio (AnyIO's "
    "pytest plugin, in app-db[testing]) or use pytest-asyncio"
)
NOT_ASYNCIO = (
    "app_db's fixtures run on asyncio only (SQLAlchemy's asyncio extension and asyncpg), but "
    "anyio_backend is {name!r}: make your anyio_backend fixture return 'asyncio'"
)

_OURS: set[Callable[..., Any]] = set()


def async_fixture(function: Callable[..., Any]) -> Any:
    """Declare one of the plugin's async fixtures (function-scoped)."""
    _OURS.add(function)
    return pytest.fixture(function)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    """Hand the plugin's async fixtures to the runner of the test that asked for them."""
    function = fixturedef.func
    if function not in _OURS:
        return (yield)
    if _run_by_pytest_asyncio(request):
        replacement = _on_pytest_asyncio(function)
    elif "anyio_backend" in request.fixturenames:
        replacement = _on_anyio(function, request)
    else:
        replacement = _failing(NO_RUNNER)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fixturedef, "func", replacement)
        return (yield)


def _run_by_pytest_asyncio(request: pytest.FixtureRequest) -> bool:
    """Return whether pytest-asyncio runs this test, and so owns the loop of its fixtures."""
    if not HAVE_PYTEST_ASYNCIO:
        return False
    if request.config.getini("asyncio_mode") == "auto":
        return True  # every async test, those marked anyio included, and sync tests' fixtures
    return request.node.get_closest_marker("asyncio") is not None


def _on_pytest_asyncio(function: Callable[..., Any]) -> Callable[..., Any]:
    """Return a plain generator that pytest-asyncio runs with its loop as the current one."""
    import pytest_asyncio  # noqa: PLC0415 - optional

    def run(**kwargs: Any) -> Iterator[Any]:
        loop = asyncio.get_event_loop()  # pytest-asyncio's, set for this fixture
        yield from _driven(function, kwargs, loop.run_until_complete)

    pytest_asyncio.fixture(run)  # type: ignore[type-var]  # marks ``run`` as pytest-asyncio's
    return run


def _on_anyio(function: Callable[..., Any], request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Return a plain generator that runs the fixture on AnyIO's runner for this test."""
    from anyio.pytest_plugin import extract_backend_and_options, get_runner  # noqa: PLC0415

    name, options = extract_backend_and_options(request.getfixturevalue("anyio_backend"))
    if name != "asyncio":
        return _failing(NOT_ASYNCIO.format(name=name))

    def run(**kwargs: Any) -> Iterator[Any]:
        with get_runner(name, options) as runner:
            if isasyncgenfunction(function):
                yield from runner.run_asyncgen_fixture(function, kwargs)
            else:
                yield runner.run_fixture(function, kwargs)

    return run


def _failing(message: str) -> Callable[..., Any]:
    """Return a fixture function that fails with ``message``.

    The failure happens inside the fixture, where pytest expects it: failing in this hook
    itself left pytest's fixture state half set, so the next test that asked for the fixture
    got an ``AssertionError`` from pytest's internals instead of the message.
    """

    def fail(**_: Any) -> Any:
        pytest.fail(message, pytrace=False)

    return fail


def _driven(
    function: Callable[..., Any],
    kwargs: dict[str, Any],
    run: Callable[[Coroutine[Any, Any, Any]], Any],
) -> Iterator[Any]:
    if not isasyncgenfunction(function):
        yield run(function(**kwargs))
        return
    generator: AsyncIterator[Any] = function(**kwargs)
    yield run(_next(generator))
    if not run(_exhausted(generator)):
        raise RuntimeError(f"fixture {function.__name__} yielded more than once")


async def _next(generator: AsyncIterator[Any]) -> Any:
    return await anext(generator)


async def _exhausted(generator: AsyncIterator[Any]) -> bool:
    try:
        await anext(generator)
    except StopAsyncIteration:
        return True
    return False
