"""Statements run straight on a DB-API cursor, for the hot paths where SQLAlchemy's execution
machinery costs more than the statements themselves (a callback's three, a page view's two).

Each statement is compiled once per dialect by SQLAlchemy, so its SQL text and the encoding of
its parameters (JSON, UTC datetimes) are exactly the ones the ORM writes. Each thread keeps one
DB-API connection from the engine's pool for its lifetime: no checkout, no pre-ping, no
Session. Any database error discards that connection; the caller then takes the ordinary path
(which has the pool's reconnect and retry logic) rather than failing the request."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from bot.core.db import get_engine, lock_writer, unlock_writer


class Prepared:
    """One statement compiled for one dialect: its SQL and how its parameters are bound."""

    def __init__(self, stmt: Any, dialect: sa.Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.sql = str(compiled)
        self._order = list(compiled.positiontup) if compiled.positional else None
        self._constants = {k: v for k, v in compiled.params.items() if v is not None}
        self._processors = dict(compiled._bind_processors)

    def bind(self, params: dict[str, Any]) -> Any:
        values = {**self._constants, **params}
        for name, process in self._processors.items():
            if name in values:
                values[name] = process(values[name])
        if self._order is None:
            return values
        return tuple(values.get(name) for name in self._order)


class Error(Exception):
    """The raw path could not run this time (its connection is discarded): take the other."""


class Raw:
    """A thread's own DB-API connection, with SQLite's writer lock taken around writes."""

    def __init__(self, url: str) -> None:
        engine = get_engine(url)
        self.dialect = engine.dialect
        self._dbapi_error = engine.dialect.loaded_dbapi.Error
        self._conn = engine.raw_connection()
        self._cursor = self._conn.cursor()
        self.sqlite = self.dialect.name == "sqlite"
        self._lock_fd = self._conn._connection_record.info.get("writer_lock")
        self._prepared: dict[Any, Prepared] = {}

    def prepared(self, key: Any, build: Any) -> Prepared:
        found = self._prepared.get(key)
        if found is None:
            found = self._prepared[key] = Prepared(build(), self.dialect)
        return found

    def row(self, statement: Prepared, params: dict[str, Any]) -> tuple | None:
        bound = statement.bind(params)
        for observe in observers:
            observe(statement.sql, bound)
        self._run(self._cursor.execute, statement.sql, bound)
        return self._cursor.fetchone()

    def once(self, statement: Prepared, params: dict[str, Any]) -> tuple | None:
        """One statement as a transaction of its own, committed (durably) when it returns.
        On PostgreSQL it runs in autocommit: one round trip, not BEGIN, it and COMMIT."""
        if self.sqlite:
            with self.writing():
                return self.row(statement, params)
        dbapi = self._conn.dbapi_connection
        self._run(setattr, dbapi, "autocommit", True)  # refused inside a transaction
        try:
            return self.row(statement, params)
        finally:
            with contextlib.suppress(Exception):  # a broken connection is discarded anyway
                dbapi.autocommit = False

    def end(self) -> None:
        """Close a read's transaction (PostgreSQL opens one at the first statement)."""
        self._rollback()

    @contextmanager
    def writing(self, durable: bool = True) -> Iterator[Raw]:
        """A write transaction, committed on success (durably: SQLite synchronous=FULL,
        PostgreSQL's own commit) and rolled back on any error. ``durable`` False: committed
        without waiting for the disk (SQLite synchronous=NORMAL, PostgreSQL synchronous_commit
        off): safe from any process crash; a power cut can lose it until the next durable
        commit (which syncs the log it shares)."""
        if self._lock_fd is not None:
            lock_writer(self._lock_fd)
        try:
            try:
                if self.sqlite:
                    if not durable:  # for this transaction only: set back below
                        self._run(self._cursor.execute, "PRAGMA synchronous=NORMAL")
                    self._run(self._cursor.execute, "BEGIN IMMEDIATE")
                elif not durable:
                    self._run(self._cursor.execute, "SET LOCAL synchronous_commit TO OFF")
                yield self
                if self.sqlite:
                    self._run(self._cursor.execute, "COMMIT")
                else:
                    self._run(self._conn.commit)
            except BaseException:
                self._rollback()
                raise
            finally:
                if self.sqlite and not durable:  # never leave the connection relaxed
                    self._run(self._cursor.execute, "PRAGMA synchronous=FULL")
        finally:
            if self._lock_fd is not None:
                unlock_writer(self._lock_fd)

    def _rollback(self) -> None:
        with contextlib.suppress(self._dbapi_error):
            if not self.sqlite:
                self._conn.rollback()
            elif self._conn.dbapi_connection.in_transaction:
                self._cursor.execute("ROLLBACK")

    def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._dbapi_error as exc:
            raise Error(str(exc)) from exc

    def discard(self) -> None:
        with contextlib.suppress(Exception):  # it is being thrown away
            self._conn.invalidate()


_local = threading.local()
# Called with each statement's SQL and bound parameters before it runs (tests and the bench's
# probe look at them; the engine's before_cursor_execute event does not see this path).
observers: list[Callable[[str, Any], object]] = []


def connection(url: str) -> Raw:
    """This thread's raw connection to ``url`` (made on first use, again after a fork)."""
    key = (os.getpid(), url)
    found = getattr(_local, "conns", None)
    if found is None or found[0] != key:
        if found is not None and found[0][0] == key[0]:
            found[1].discard()  # another database now (tests): let the old one go
        try:
            _local.conns = found = (key, Raw(url))
        except sa.exc.SQLAlchemyError as exc:
            raise Error(str(exc)) from exc
    return found[1]


def discard(url: str) -> None:
    """Forget this thread's connection to ``url`` (after an error on it)."""
    found = getattr(_local, "conns", None)
    if found is not None and found[0] == (os.getpid(), url):
        found[1].discard()
        _local.conns = None
