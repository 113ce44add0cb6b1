"""The engine factory, the sessionmaker and the transaction context manager."""

import pytest
from pydantic import SecretStr
from sqlalchemy import func, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.pool import NullPool
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_db import (
    DatabaseUnavailableError,
    Settings,
    StatementTimeoutError,
    create_engine,
    create_sessionmaker,
    driver_transaction,
    transaction,
)
from app_db.lazy_session import LazyAsyncSession
from app_db.models import Customer, CustomerCreate
from tests.conftest import settings as settings_of


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


async def count_customers(db_session: AsyncSession, name: str) -> int:
    result = await db_session.exec(
        select(func.count()).select_from(Customer).where(Customer.name == name)
    )
    return result.one()


async def test_engine_is_lazy_and_takes_its_pool_from_settings() -> None:
    engine = create_engine(
        settings(
            database_url=SecretStr("postgresql://app@127.0.0.1:1/nowhere"),
            database_pool_size=3,
            database_max_overflow=2,
            database_pool_timeout=4.5,
        )
    )
    try:
        assert engine.url.drivername == "postgresql+asyncpg"
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
        assert engine.pool._max_overflow == 2  # type: ignore[attr-defined]
        assert engine.pool._timeout == 4.5  # type: ignore[attr-defined]
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_server_settings_reach_the_connection(app_db_engine: AsyncEngine) -> None:
    async with app_db_engine.connect() as connection:
        application_name = await connection.scalar(text("SHOW application_name"))
        statement_timeout = await connection.scalar(text("SHOW statement_timeout"))

    assert application_name == "app_db"
    assert statement_timeout == "30s"


async def test_sessionmaker_gives_sqlmodel_sessions_that_keep_attributes(
    app_db_engine: AsyncEngine,
) -> None:
    """Called with arguments or without, alike but for the arguments."""
    sessionmaker = create_sessionmaker(app_db_engine)
    assert sessionmaker.class_ is LazyAsyncSession
    assert issubclass(LazyAsyncSession, AsyncSession)
    assert sessionmaker.kw["expire_on_commit"] is False
    sessionmaker.configure(info={"app": "kept"})
    plain = sessionmaker()
    given = sessionmaker(info={"request": "added"}, autoflush=False)
    try:
        for session in (plain, given):
            assert type(session) is LazyAsyncSession
            assert type(session.sync_session) is driver_transaction.Session
            assert session.bind is app_db_engine
            assert session.sync_session.expire_on_commit is False
        assert plain.info == {"app": "kept"}
        assert given.info == {"app": "kept", "request": "added"}
        assert (plain.sync_session.autoflush, given.sync_session.autoflush) == (True, False)
    finally:
        for session in (plain, given):
            await session.close()


async def test_transaction_commits_on_success(
    db_sessionmaker: async_sessionmaker[AsyncSession], db_session: AsyncSession
) -> None:
    async with transaction(db_sessionmaker) as session:
        session.add(Customer.model_validate(CustomerCreate(name="committed")))

    assert await count_customers(db_session, "committed") == 1


async def test_transaction_rolls_back_on_error(
    db_sessionmaker: async_sessionmaker[AsyncSession], db_session: AsyncSession
) -> None:
    class HandlerError(Exception):
        pass

    async def failing_handler() -> None:
        async with transaction(db_sessionmaker) as session:
            session.add(Customer.model_validate(CustomerCreate(name="rolled back")))
            await session.flush()
            raise HandlerError

    with pytest.raises(HandlerError):
        await failing_handler()

    assert await count_customers(db_session, "rolled back") == 0


async def test_null_pool_can_be_chosen() -> None:
    engine = create_engine(
        settings(database_url=SecretStr("postgresql://app@127.0.0.1:1/nowhere")),
        poolclass=NullPool,
    )
    try:
        assert isinstance(engine.pool, NullPool)
    finally:
        await engine.dispose()


async def test_a_connection_out_during_dispose_is_closed_when_it_comes_back(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await engine.dispose()  # what a shutdown or a turnover does while requests run
        assert not driver.is_closed()
    assert driver.is_closed()  # not queued in the replaced pool until the collector finds it
    async with engine.connect() as connection:  # the new pool serves
        assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1


async def test_a_session_class_with_its_own_commit_and_close_gets_them_called(
    own_database: URL,
) -> None:
    called: list[str] = []

    class Audited(AsyncSession):
        async def commit(self) -> None:
            called.append("commit")
            await super().commit()

        async def close(self) -> None:
            called.append("close")
            await super().close()

    engine = create_engine(settings_of(own_database))
    try:
        maker: async_sessionmaker[AsyncSession]
        maker = async_sessionmaker(engine, class_=Audited, expire_on_commit=False)
        async with transaction(maker) as session:
            session.add(Customer.model_validate(CustomerCreate(name="audited")))
        assert called == ["commit", "close"]
        async with transaction(create_sessionmaker(engine)) as session:
            assert await count_customers(session, "audited") == 1
    finally:
        await engine.dispose()


async def test_a_commit_that_fails_still_closes_the_session(own_database: URL) -> None:
    """Commit and close go into SQLAlchemy's greenlet together; the close runs all the same."""
    engine = create_engine(settings_of(own_database))
    try:
        maker = create_sessionmaker(engine)
        held: list[AsyncSession] = []

        async def commit_on_a_dead_connection() -> None:
            async with transaction(maker) as session:
                held.append(session)
                session.add(Customer.model_validate(CustomerCreate(name="never")))
                await session.flush()
                async with engine.connect() as other:  # another pooled connection
                    pid = await session.scalar(text("SELECT pg_backend_pid()"))
                    await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

        with pytest.raises(DatabaseUnavailableError):
            await commit_on_a_dead_connection()
        assert not held[0].in_transaction()
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        async with transaction(maker) as session:
            assert await count_customers(session, "never") == 0
    finally:
        await engine.dispose()


async def test_a_database_failure_inside_the_block_leaves_it_typed(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async def cancelled_by_the_server() -> None:
        async with transaction(db_sessionmaker) as session:
            connection = await session.connection()
            await connection.execute(text("SET LOCAL statement_timeout = 1"))
            await connection.execute(text("SELECT pg_sleep(1)"))

    with pytest.raises(StatementTimeoutError) as caught:
        await cancelled_by_the_server()
    assert "statement timeout" in str(caught.value.__cause__)  # the original, as the cause


async def test_a_transaction_block_is_entered_once(
    db_sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    block = transaction(db_sessionmaker)
    async with block:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        async with block:
            pass
