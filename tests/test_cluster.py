"""Which server answers, without a server: host lists, WAL positions, the lag bound, the fence."""

import logging
from datetime import timedelta
from typing import Any

import pytest

from app_db import FencedServerError, create_engine
from app_db.cluster import routing, wal
from app_db.cluster.fencing import Fence
from app_db.cluster.lag import Lag
from app_db.errors import ConfigurationError
from app_db.settings import Settings, load_settings
from tests.test_settings import PASSWORD

pytestmark = pytest.mark.usefixtures("clean_env")


def load(**values: Any) -> Settings:
    return load_settings(_env_file=None, **values)


def hosts_of(settings: Settings) -> tuple[str, ...]:
    listed = settings.sqlalchemy_url().query["host"]
    assert isinstance(listed, tuple)
    return listed


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://app:{pw}@db1:5440,db2:5441/app", ("db1:5440", "db2:5441")),
        ("postgresql://app:{pw}@db1,db2:5441/app", ("db1:5432", "db2:5441")),
        ("postgresql://app:{pw}@/app?host=db1:5440&host=db2:5441", ("db1:5440", "db2:5441")),
        ("postgresql://app:{pw}@/app?host=db1,db2&port=5440,5441", ("db1:5440", "db2:5441")),
        ("postgresql://app:{pw}@/app?host=db1,db2&port=5440", ("db1:5440", "db2:5440")),
        ("postgresql://app:{pw}@/app?host=db1&host=db2", ("db1:5432", "db2:5432")),
    ],
)
def test_every_form_of_several_hosts_ends_as_one(url: str, expected: tuple[str, ...]) -> None:
    settings = load(database_url=url.format(pw=PASSWORD))

    assert hosts_of(settings) == expected
    built = settings.sqlalchemy_url()
    assert (built.username, built.password, built.database) == ("app", PASSWORD, "app")
    engine = create_engine(settings)  # SQLAlchemy's dialect takes the URL as it is
    _, params = engine.dialect.create_connect_args(engine.url)
    assert params["host"] == [h.split(":")[0] for h in expected]
    assert params["port"] == [int(h.split(":")[1]) for h in expected]


def test_libpq_form_keeps_its_query_and_read_url_takes_it_too() -> None:
    settings = load(
        database_url=f"postgresql://app:{PASSWORD}@db1:5440,db2:5441/app"
        "?target_session_attrs=primary&sslmode=disable",
        database_read_url="postgres://app@r1:5440,r2/app",
    )

    url = settings.sqlalchemy_url()
    assert url.query["target_session_attrs"] == "primary"
    assert settings.sslmode() == "disable"
    read = settings.read_settings()
    assert read is not None
    assert hosts_of(read) == ("r1:5440", "r2:5432")


def test_postgres_parts_take_lists_as_libpq_does(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "POSTGRES_HOST": "db1,db2",
        "POSTGRES_PORT": "5440,5441",
        "POSTGRES_USER": "app",
        "POSTGRES_DB": "app",
    }.items():
        monkeypatch.setenv(name, value)
    assert hosts_of(load()) == ("db1:5440", "db2:5441")

    monkeypatch.setenv("POSTGRES_PORT", "6000")
    assert hosts_of(load()) == ("db1:6000", "db2:6000")

    monkeypatch.setenv("POSTGRES_HOST", "db1")
    url = load().sqlalchemy_url()
    assert (url.host, url.port) == ("db1", 6000)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"database_url": "postgresql://app:{pw}@db1,db2/a?host=db3"}, "both before the path"),
        ({"database_url": "postgresql://app:{pw}@/a?host=db1,db2&port=1,2,3"}, "2 hosts but 3"),
        ({"database_url": "postgresql://app:{pw}@/a?host=d1:1&host=d2&port=5"}, "both as host:p"),
        ({"database_url": "postgresql://app:{pw}@d1:x,d2/a"}, "not a number from 1 to 65535"),
        ({"database_url": "postgresql://app:{pw}@[::1]:5,d2/a"}, "an IPv6 address cannot"),
        ({"database_url": "postgresql://app:{pw}@d1,d2/a?target_session_attrs=rw"}, "must be one"),
        ({"database_read_url": "postgresql://app:{pw}@d1,,d2/a"}, "DATABASE_READ_URL has an empty"),
        ({"postgres_host": "d1,d2", "postgres_port": "1,2,3"}, "3 ports for 2 hosts"),
        ({"postgres_host": "d1", "postgres_port": "0"}, "POSTGRES_PORT: a port is a number"),
    ],
)
def test_bad_host_lists_are_named_without_the_password(
    values: dict[str, str], expected: str
) -> None:
    values = {key: value.format(pw=PASSWORD) for key, value in values.items()}
    if "database_url" not in values:
        values = {"postgres_user": "app", "postgres_db": "app", "postgres_host": "d1", **values}
        if "database_read_url" in values:
            values["database_url"] = "postgresql://app@db/app"

    with pytest.raises(ConfigurationError) as caught:
        load(**values)

    assert expected in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_read_max_lag_is_a_duration_or_off(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://app@db/app"
    assert load(database_url=url).database_read_max_lag == timedelta(seconds=10)
    for value, expected in (("0.5", timedelta(milliseconds=500)), ("PT1M", timedelta(minutes=1))):
        monkeypatch.setenv("DATABASE_READ_MAX_LAG", value)
        assert load(database_url=url).database_read_max_lag == expected
    monkeypatch.setenv("DATABASE_READ_MAX_LAG", "off")
    assert load(database_url=url).database_read_max_lag is None
    monkeypatch.setenv("DATABASE_READ_MAX_LAG", "0")
    with pytest.raises(ConfigurationError, match="DATABASE_READ_MAX_LAG must be positive"):
        load(database_url=url)


def test_command_timeout_follows_the_statement_timeout_unless_set() -> None:
    url = "postgresql://app@db/app"
    assert load(database_url=url).connect_args()["command_timeout"] == 32.0
    assert load(database_url=url, database_statement_timeout_ms=0).command_timeout() is None
    assert load(database_url=url, database_command_timeout=5).command_timeout() == 5.0


def test_wal_positions_read_and_write_as_postgresql_does() -> None:
    for text in ("0/0", "0/3018180", "16/B374D848", "FFFFFFFF/FFFFFFFF"):
        position = wal.parse(text)
        assert position is not None
        assert wal.format_lsn(position) == text
    assert wal.parse("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert wal.parse("0/3018180") < wal.parse("1/0")  # type: ignore[operator]
    for bad in (None, "", "3018180", "0/", "g/1", "1/2/3", "0/123456789", " 0/1"):
        assert wal.parse(bad) is None


def test_a_carried_position_is_hex_and_anything_else_means_the_primary() -> None:
    position = wal.parse("16/B374D848")
    assert position is not None
    assert routing.token(position) == "16b374d848"
    assert routing.position_of("16b374d848") == position
    for forged in ("", "16/B374D848", "16B374D848", "0x10", "1" * 17, "-1", " 10"):
        assert routing.position_of(forged) == wal.BEYOND_ANY


def test_the_lag_bound_is_the_time_since_the_newest_primary_position_replayed() -> None:
    lag = Lag()
    assert lag.bound(100.0) is None

    lag.record(10.0, primary=500, replayed=400)  # behind what the primary had at 10 s
    assert lag.bound(10.5) is None
    lag.record(11.0, primary=600, replayed=550)  # past 500: it had all of 10 s
    assert lag.bound(11.2) == pytest.approx(1.2)
    lag.record(12.0, primary=600, replayed=600)  # caught up with 12 s (an idle primary)
    assert lag.bound(12.1) == pytest.approx(0.1)
    lag.record(13.0, primary=900, replayed=None)  # the replica did not say: nothing learnt
    assert lag.covered_at == 12.0
    assert lag.bound(20.0) == pytest.approx(8.0)  # the bound grows with the clock
    assert list(lag.samples) == [(13.0, 900)]


class FakeServer:
    """What ``pg_control_system()`` and the WAL file name say about a server."""

    def __init__(self, system: str, timeline: int, *, standby: bool = False) -> None:
        self.row = {
            "system": system,
            "standby": standby,
            "checkpoint_timeline": 1 if not standby else timeline,
            "wal_file": None if standby else f"{timeline:08X}000000000000000A",
        }

    async def fetchrow(self, _sql: str) -> dict[str, Any]:
        return self.row


class Refusing:
    async def fetchrow(self, _sql: str) -> None:
        import asyncpg  # noqa: PLC0415

        raise asyncpg.InsufficientPrivilegeError("permission denied for function")


async def test_the_fence_refuses_an_older_timeline_of_a_system_it_saw(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fence = Fence()
    await fence.admit(FakeServer("7001", 1), "old:5432")
    await fence.admit(FakeServer("7001", 2), "new:5432")  # promoted: checkpoint still says 1
    await fence.admit(FakeServer("9999", 1), "other:5432")  # another system is its own
    await fence.admit(FakeServer("7001", 1, standby=True), "standby:5432")  # cannot write

    for _ in range(3):
        with pytest.raises(FencedServerError, match="timeline 1 of database system 7001"):
            await fence.admit(FakeServer("7001", 1), "old:5432")
    errors = [r for r in caplog.records if r.name == "app_db.cluster.fencing"]
    assert [(r.levelno, "refused old:5432" in r.getMessage()) for r in errors] == [
        (logging.ERROR, True)
    ]
    await fence.admit(FakeServer("7001", 3, standby=True), "standby:5432")  # a newer one exists
    with pytest.raises(FencedServerError):
        await fence.admit(FakeServer("7001", 2), "new:5432")
    caplog.clear()


async def test_without_the_control_functions_fencing_is_off_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fence = Fence()
    await fence.admit(FakeServer("7001", 2), "new:5432")
    await fence.admit(Refusing(), "locked:5432")
    await fence.admit(FakeServer("7001", 1), "old:5432")  # no longer checked
    assert fence.off
    assert [r.levelno for r in caplog.records if r.name == "app_db.cluster.fencing"] == [
        logging.WARNING
    ]
    caplog.clear()
