"""Opening a store's database: the default URL, engine creation and SQLite set-up for many processes.

SQLite is shared by several worker processes: WAL and a busy timeout let them queue instead of failing, BEGIN
IMMEDIATE keeps transactions from deadlocking, and a forked child never reuses its parent's pooled connection.
Server databases get a connect timeout and a one-line hint when their driver is missing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

from study.errors import StudyError

_DRIVER_PACKAGES = {
    "psycopg": "psycopg[binary]",
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "asyncpg": "asyncpg",
    "mysqldb": "mysqlclient",
    "pymysql": "pymysql",
    "mysqlconnector": "mysql-connector-python",
    "oracledb": "oracledb",
    "pyodbc": "pyodbc",
}


def default_url(base: str | os.PathLike[str] | None = None, *, create: bool = True) -> str:
    """``sqlite:///<base or cwd>/results/study.db``, creating the folder unless ``create=False``.

    The path is made absolute so worker processes that change directory (Ray does) reach the same file.
    """
    folder = Path(base if base is not None else Path.cwd()).resolve() / "results"
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'study.db'}"


def store_exists(url: str) -> bool:
    """False only for an SQLite file URL whose file is missing: opening it would create an empty store.

    A command that may still stop on a user error (``--dry-run``, missing weights) asks this first, so it
    never leaves an empty store file behind. Server databases and in-memory stores count as existing.
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        return True  # ResultsStore reports the bad URL
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return True
    return Path(database).expanduser().exists()


def read_only(error: BaseException) -> bool:
    """SQLite's "attempt to write a readonly database", PostgreSQL's "read-only transaction"."""
    text = str(getattr(error, "orig", None) or error).lower()
    return "readonly database" in text or "read-only transaction" in text


def first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _driver_hint(url: URL, error: BaseException) -> str:
    try:
        driver = url.get_dialect().driver
    except Exception:  # noqa: BLE001 - only used to word the hint
        driver = getattr(error, "name", None) or url.get_driver_name()
    package = _DRIVER_PACKAGES.get(str(driver).lower(), str(driver))
    return f"the {url.get_backend_name()} driver {driver!r} is not installed; pip install '{package}'"


def _sqlite_setup(engine: Engine, *, memory: bool) -> None:
    """WAL + busy timeout so processes share one file, and BEGIN IMMEDIATE so transactions never deadlock.

    pysqlite's own deferred BEGIN lets two writers both read and then fail to upgrade ("database is locked"
    without waiting); taking the write lock at BEGIN makes them queue on the busy timeout instead. This is
    SQLAlchemy's documented recipe for pysqlite transactions.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        if not memory:
            _enable_wal(cursor)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _enable_wal(cursor: Any, timeout: float = 30.0) -> None:
    """Switch a file to WAL, waiting out other connections.

    SQLite refuses the switch at once ("database is locked") while another connection writes a rollback-journal
    file, without calling the busy handler, so processes opening a new store together could lose (3 of 300 racing
    pairs, measured; it failed a Ray test in CI). A file already in WAL mode stays so: reading the mode suffices.
    """
    import sqlite3

    deadline, pause = time.monotonic() + timeout, 0.01
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(2 * pause, 0.5)


def _fork_safe(engine: Engine) -> None:
    """Never reuse a pooled connection in a forked child (SQLAlchemy's pooling-with-fork recipe)."""

    @event.listens_for(engine, "connect")
    def _remember_pid(_dbapi_connection: Any, record: Any) -> None:
        record.info["pid"] = os.getpid()

    @event.listens_for(engine, "checkout")
    def _check_pid(_dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if record.info.get("pid") != os.getpid():
            record.dbapi_connection = proxy.dbapi_connection = None
            raise exc.DisconnectionError("connection belongs to the parent process; reconnecting")


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL of a store, or a one-line error naming the URL forms that work."""
    try:
        return make_url(url)
    except exc.ArgumentError:
        raise StudyError(
            f"invalid results store URL {url!r}; use e.g. sqlite:///results/study.db "
            "or postgresql+psycopg://user@host/dbname"
        ) from None


def make_engine(url: URL, *, create: bool) -> Engine:
    """An engine for ``url`` set up for many processes (SQLite: WAL, busy timeout, BEGIN IMMEDIATE; fork-safe pool).

    With ``create=False`` a missing SQLite file is an error rather than a new empty store. Raises StudyError for a
    missing folder, an unknown database or a missing driver.
    """
    display_url = url.render_as_string(hide_password=True)
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {}
    connect_args: dict[str, Any] = {}
    database = url.database or ""
    memory = backend == "sqlite" and database in ("", ":memory:")
    if backend == "sqlite":
        if memory:
            kwargs["poolclass"] = StaticPool  # one shared connection, else each session sees an empty db
            connect_args["check_same_thread"] = False
        else:
            connect_args["timeout"] = 30.0
            if not database.startswith("file:"):
                parent = Path(database).expanduser().resolve().parent
                if not parent.is_dir():
                    raise StudyError(
                        f"results store {display_url} is in a missing folder {parent}; create it or fix the URL"
                    )
                if not create and not Path(database).expanduser().exists():
                    raise StudyError(f"no results store at {display_url}; run a sweep first or fix the store URL")
    elif backend in ("postgresql", "mysql", "mariadb") and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = 10  # fail fast on a wrong host instead of hanging on TCP
    try:
        engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=not memory, **kwargs)
    except exc.NoSuchModuleError:
        raise StudyError(
            f"unknown database {url.drivername!r} in results store URL {display_url!r}; "
            "use sqlite:///path.db or postgresql+psycopg://user@host/dbname"
        ) from None
    except ImportError as error:
        raise StudyError(f"cannot open results store {display_url}: {_driver_hint(url, error)}") from None
    if backend == "sqlite":
        _sqlite_setup(engine, memory=memory)
    if not memory:
        _fork_safe(engine)
    return engine
