"""Engine, sessions and migrations. One engine per process (made lazily, so a forked
gunicorn worker never shares the parent's connections)."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Engine
from sqlmodel import Session

MIGRATIONS_DIR = Path(__file__).parent.parent / "migrations"

_engines: dict[tuple[int, str], Engine] = {}


def normalize_url(url: str) -> str:
    """Accept the common spellings of a PostgreSQL URL and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API connection
    cur = dbapi_conn.cursor()
    # WAL lets readers run beside the one writer; synchronous=FULL fsyncs every commit, so an
    # event acknowledged to WeChat survives a power cut, not only a crash of the process.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class _WriterLock:
    """Queue SQLite writers on a file lock before BEGIN IMMEDIATE.

    SQLite's own busy handler polls with sleeps that grow to 100 ms, so under concurrent
    callbacks most of a waiting process's time is spent asleep while the lock is already free.
    A blocking flock() wakes the next writer the moment the previous one finishes. Each
    connection has its own descriptor, so threads and processes queue alike."""

    def __init__(self, db_path: str):
        self.path = db_path + ".writer-lock"

    def on_connect(self, _dbapi_conn, record) -> None:  # noqa: ANN001
        record.info["writer_lock"] = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def on_close(self, _dbapi_conn, record) -> None:  # noqa: ANN001
        fd = record.info.pop("writer_lock", None)
        if fd is not None:
            os.close(fd)

    @staticmethod
    def acquire(conn, timeout: float = 10.0) -> None:  # noqa: ANN001 - a SQLAlchemy Connection
        """Take the lock, polling at most every 2 ms; after ``timeout`` let SQLite's own busy
        handling decide (a nested write in one thread must fail, never hang)."""
        fd = conn.connection._connection_record.info.get("writer_lock")
        if fd is not None:
            lock_writer(fd, timeout)

    @staticmethod
    def release(_dbapi_conn, record, *_args) -> None:  # noqa: ANN001
        """On check-in to the pool: after the commit or rollback has completed."""
        fd = record.info.get("writer_lock")
        if fd is not None:
            unlock_writer(fd)


def unlock_writer(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)


def lock_writer(fd: int, timeout: float = 10.0) -> None:
    """Take a SQLite writer lock (see _WriterLock) on its descriptor."""
    pause, deadline = 0.0002, time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.002)


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 10, "check_same_thread": False})
        sa.event.listen(engine, "connect", _sqlite_pragmas)

        @sa.event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn, _record) -> None:  # noqa: ANN001
            dbapi_conn.isolation_level = None

        lock = _WriterLock(path) if path and path != ":memory:" else None
        if lock is not None:
            sa.event.listen(engine, "connect", lock.on_connect)
            sa.event.listen(engine.pool, "close", lock.on_close)
            sa.event.listen(engine.pool, "checkin", lock.release)

        def begin(conn) -> None:  # noqa: ANN001
            # pysqlite's own BEGIN defers the write lock; take it at BEGIN instead, so two
            # writers queue here rather than failing with "database is locked" mid-way.
            if lock is not None:
                lock.acquire(conn)
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        sa.event.listen(engine, "begin", begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def get_engine(url: str) -> Engine:
    key = (os.getpid(), normalize_url(url))
    engine = _engines.get(key)
    if engine is None:
        engine = _engines[key] = make_engine(url)
    return engine


def dispose_all() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(get_engine(url), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


CONFLICTS = frozenset({"40P01", "40001"})  # PostgreSQL: deadlock_detected, serialization_failure


def conflict(exc: BaseException) -> bool:
    """Did the database abort this transaction only because another one got in its way (a
    deadlock it broke, a serialization failure)? Then running it again is the cure."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) in CONFLICTS


def any_of(session: Session, column: sa.ColumnElement, values: list) -> sa.ColumnElement[bool]:
    """``column IN values``: on PostgreSQL one array parameter (``= ANY(...)``), so the SQL
    text is the same for any number of values (psycopg parses and caches it once); elsewhere
    an ordinary IN list."""
    if session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.literal(values, ARRAY(column.type)))
    return column.in_(values)


def upsert_by_name(
    session: Session,
    model: Any,
    items: Iterable[Any],
    create: Callable[[Session, Any], Any],
    update: Callable[[Session, Any, Any], Any],
) -> tuple[int, int]:
    """Create or update each item's row of ``model`` by its ``name``, in the caller's
    transaction (the rule imports). Returns (created, updated)."""
    created = updated = 0
    for data in items:
        row = session.execute(sa.select(model).where(model.name == data.name)).scalar()
        if row is None:
            create(session, data)
            created += 1
        else:
            update(session, row, data)
            updated += 1
    return created, updated


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    with get_engine(url).connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def dialect_insert(session: Session, table: sa.Table) -> Any:
    """An INSERT for the session's dialect, so ``on_conflict_do_nothing`` works on both."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def plus_seconds(session: Session, column: Any, seconds: float) -> Any:
    """``column + seconds`` for a UTC timestamp column, in SQL (SQLite keeps datetimes as
    ``YYYY-MM-DD HH:MM:SS.ffffff`` text: the sum is formatted the same way, to the ms)."""
    if session.get_bind().dialect.name == "sqlite":
        return sa.func.strftime("%Y-%m-%d %H:%M:%f", column, f"+{seconds:.3f} seconds")
    return column + sa.literal(timedelta(seconds=seconds), sa.Interval())


def keyset_before(time_col: Any, id_col: Any, time: Any, row_id: int) -> Any:
    """Keyset pagination, newest first: the rows after ``(time, row_id)``, written as a row
    comparison so the (…, time, id) index bounds the scan on SQLite and PostgreSQL alike (an
    ``a < t OR (a = t AND id < i)`` filter reads every row above a deep page)."""
    return sa.tuple_(time_col, id_col) < sa.tuple_(
        sa.bindparam(None, time, type_=time_col.type), sa.bindparam(None, row_id, type_=id_col.type)
    )
