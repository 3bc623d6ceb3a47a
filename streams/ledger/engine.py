"""Composition helpers: build the ledger engine and session factory from a URL.

Nothing here runs at import time; `bootstrap()` calls these once per process.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL, Connection, ExceptionContext
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from streams.ledger.errors import AppendOnlyViolationError, LedgerUnreachable
from streams.ledger.models import AuditEntry

SQLITE_BUSY_TIMEOUT_S = 30.0
# the connect argument that bounds a connection attempt, by DBAPI driver (seconds)
CONNECT_TIMEOUT_ARGS = {"psycopg": "connect_timeout", "psycopg2": "connect_timeout",
                        "pg8000": "timeout", "pymysql": "connect_timeout"}  # fmt: skip


def create_ledger_engine(
    url: str | URL, *, connect_timeout_s: float | None = None, **engine_options: Any
) -> Engine:
    """An engine for the ledger at `url`; SQLite gets FKs, WAL, secure_delete, real BEGIN.

    Statement parameters are hidden from errors and logs (they include wrapped keys).

    A database server that refuses a connection, or does not answer within
    `connect_timeout_s` (CONTACTFLOW_CONNECT_TIMEOUT_S; None waits as long as the driver
    does), raises `LedgerUnreachable`: one line naming host:port, never the password.

    For an SQLite file the parent directory is created. `engine_options` go to
    `sqlalchemy.create_engine` unchanged.
    """
    parsed = make_url(url)
    # Bound values (wrapped keys, digests) must never reach exception messages or logs.
    engine_options.setdefault("hide_parameters", True)
    if parsed.get_backend_name() != "sqlite":
        engine_options.setdefault("pool_pre_ping", True)
        argument = CONNECT_TIMEOUT_ARGS.get(parsed.get_driver_name())
        if connect_timeout_s is not None and argument is not None:
            connect_args = engine_options.setdefault("connect_args", {})
            # libpq counts whole seconds and takes less than 2 as 2
            connect_args.setdefault(argument, max(2, math.ceil(connect_timeout_s)))
        engine = create_engine(parsed, **engine_options)
        _refuse_unreachable_server(engine, parsed, connect_timeout_s)
        return engine

    database = parsed.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    connect_args = engine_options.pop("connect_args", {})
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_S)
    engine = create_engine(parsed, connect_args=connect_args, **engine_options)
    _configure_sqlite(engine)
    return engine


def _refuse_unreachable_server(engine: Engine, url: URL, timeout_s: float | None) -> None:
    """A failed connection attempt (SQLAlchemy hands it over without a connection) as one
    `LedgerUnreachable` line; errors of a statement on a live connection stay as they are."""
    where = (
        f"{url.host or 'localhost'}:{url.port or _DEFAULT_PORTS.get(url.get_backend_name(), '?')}"
    )

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        if context.connection is not None or context.original_exception is None:
            return
        raise LedgerUnreachable(where, timeout_s, context.original_exception) from None


_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}


# Execution option of a session's connection whose transaction will only read (SQLite
# then begins it deferred, not IMMEDIATE): `session.connection(execution_options=...)`.
READS_ONLY = "contactflow_reads_only"


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; we take it
    # over (SQLAlchemy's documented recipe) so reads and writes share one transaction.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA secure_delete = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    # IMMEDIATE: a transaction takes the write lock when it starts, waiting up to the busy
    # timeout. A deferred one that read first and writes later fails at once (SQLITE_BUSY,
    # no waiting) when another process wrote meanwhile: the privacy app applying acks
    # while `dsr submit` runs did exactly that. SQLite has one writer at a time anyway.
    # A transaction that will only read (`READS_ONLY`) begins deferred instead: in WAL
    # mode it reads a snapshot and never holds up a writer (the router's batch, while its
    # commit thread writes the batch before it).
    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        options = connection.get_execution_options()
        if options.get("isolation_level") != "AUTOCOMMIT":
            connection.exec_driver_sql("BEGIN" if options.get(READS_ONLY) else "BEGIN IMMEDIATE")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to `engine` that refuse bulk UPDATE/DELETE of the audit log."""
    factory = sessionmaker(bind=engine)
    event.listen(factory, "do_orm_execute", _refuse_bulk_audit_changes)
    return factory


def _refuse_bulk_audit_changes(state: ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) == AuditEntry.__tablename__:
        verb = "update" if state.is_update else "delete"
        raise AppendOnlyViolationError(f"audit_log is append-only: refusing bulk {verb}")
