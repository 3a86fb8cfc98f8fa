"""The results store: one row per grid cell in a SQL database, the single source of truth for "what is done".

Why a database and not a folder of JSON files: cells are run by several worker processes (later Ray tasks on a
cluster and concurrent sweeps against PostgreSQL), and each cell must be trained exactly once. That needs an
atomic "claim" that works across processes and hosts, which a unique constraint plus conditional UPDATEs
give us on both SQLite and PostgreSQL (Optuna's storage works the same way).

Lifecycle of a row (see ``docs/results-schema.md``)::

    (no row) --claim--> running --complete--> complete
                          |  ^
                        fail  \\--claim (heartbeat older than stale_after, or worker pid dead on this host)
                          v
                        failed --claim(retry_failed=True)--> running

``release`` (an interrupted sweep, SIGINT/SIGTERM) clears the heartbeat of its own ``running`` rows, so they are
claimable at once, as a SIGKILLed worker's rows are once found dead or stale: an interruption is never a failure.

The schema is data: ``KEY_COLUMNS`` and ``METRIC_COLUMNS`` below are the only lists of those columns; the
table, the result splitting and the type coercion are all derived from them.

This module never imports TensorFlow; pandas is imported only by ``to_frame``/``datasets_frame``.
"""

from __future__ import annotations

import contextlib
import enum
import math
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from study.errors import StudyError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DATASET_COLUMNS",
    "JSON_COLUMNS",
    "KEY_COLUMNS",
    "METRIC_COLUMNS",
    "RUN_COLUMNS",
    "ColumnSpec",
    "ResultsStore",
    "RunStatus",
    "default_url",
    "make_cell_key",
    "store_exists",
]

DEFAULT_STALE_AFTER = 600.0
"""Seconds without a heartbeat after which a ``running`` cell is presumed dead and may be claimed again."""

_ColType = Literal["str", "int", "float", "bool"]


NO_BACKBONE = "none"
"""The ``backbone`` column's value for a cell whose strategy uses no backbone (``Cell.backbone`` is None)."""


@dataclass(frozen=True)
class ColumnSpec:
    """One typed column described as data, so the table, coercion and docs cannot drift apart."""

    name: str
    type: _ColType
    unit: str
    doc: str


KEY_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("dataset", "str", "", "dataset name in the dataset registry"),
    ColumnSpec("domain", "str", "", "domain label of the dataset (e.g. natural, medical, satellite)"),
    ColumnSpec("n_images", "int", "images", "training-set size: labelled images used for training"),
    ColumnSpec("strategy", "str", "", "transfer strategy (e.g. linear_probe, fine_tune_top, scratch)"),
    ColumnSpec("backbone", "str", "", f"backbone name in the registry ({NO_BACKBONE!r}: the strategy has none)"),
    ColumnSpec("image_size", "int", "px", "side length of the square network input"),
    ColumnSpec("seed", "int", "", "replicate seed (data subset, initialisation, shuffling)"),
    ColumnSpec("augment", "bool", "", "whether training-time data augmentation was on"),
    ColumnSpec("epochs_budget", "int", "epochs", "maximum training epochs allowed for the cell"),
    ColumnSpec("trials_budget", "int", "trials", "hyper-parameter search trials allowed for the cell"),
)
"""Columns that identify a cell; filled by ``claim`` from the cell dict."""

_REQUIRED_KEYS = ("dataset", "n_images", "strategy", "backbone", "image_size", "seed")

METRIC_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("accuracy", "float", "fraction 0-1", "test-set accuracy"),
    ColumnSpec("balanced_accuracy", "float", "fraction 0-1", "mean per-class recall on the test set"),
    ColumnSpec("macro_f1", "float", "fraction 0-1", "unweighted mean of per-class F1 on the test set"),
    ColumnSpec(
        "roc_auc",
        "float",
        "fraction 0-1",
        "ROC AUC on the test set (one-vs-rest macro for >2 classes); NULL when undefined",
    ),
    ColumnSpec("log_loss", "float", "nats", "mean cross-entropy of the predicted probabilities on the test set"),
    ColumnSpec(
        "majority_share",
        "float",
        "fraction 0-1",
        "share of test predictions that fall in the single most-predicted class",
    ),
    ColumnSpec("degenerate", "bool", "", "the model collapsed (e.g. predicts one class); metrics are not comparable"),
    ColumnSpec("train_seconds", "float", "s", "wall time spent training (search trials included)"),
    ColumnSpec("extract_seconds", "float", "s", "wall time spent extracting/caching backbone features"),
    ColumnSpec("eval_seconds", "float", "s", "wall time spent evaluating on the test set"),
    ColumnSpec("trainable_params", "int", "parameters", "trainable parameters of the final model"),
    ColumnSpec("total_params", "int", "parameters", "all parameters of the final model"),
    ColumnSpec("model_mb", "float", "MB (10^6 bytes)", "size of the saved final model"),
    ColumnSpec("latency_ms", "float", "ms/image", "inference latency per image of the final model"),
)
"""Metrics flattened out of a result for fast SQL/pandas filtering; everything else goes to ``metrics``."""

JSON_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("metrics", "str", "JSON object", "every result field that has no column of its own"),
    ColumnSpec("curves", "str", "JSON", 'per-epoch learning curves, e.g. {"loss": [...], "val_accuracy": [...]}'),
    ColumnSpec("params", "str", "JSON object", "hyper-parameters chosen for the final model"),
    ColumnSpec("provenance", "str", "JSON object", "software versions, data and weight checksums, host/device"),
)
"""Free-form parts of a result, stored as JSON (decoded by ``rows``/``to_frame``, strings in exports)."""


class RunStatus(enum.StrEnum):
    """State of a cell; a StrEnum so ``RunStatus.COMPLETE == "complete"``."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


_SQL_TYPES: dict[str, type[sa.types.TypeEngine[Any]]] = {
    "str": sa.String,
    "int": sa.BigInteger,
    "float": sa.Float,
    "bool": sa.Boolean,
}
_JSON = sa.JSON(none_as_null=True)
_METRIC_NAMES = frozenset(c.name for c in METRIC_COLUMNS)
_JSON_NAMES = frozenset(c.name for c in JSON_COLUMNS)
_MAX_ERROR_CHARS = 64_000  # a full traceback fits; a runaway log does not bloat the table

metadata = sa.MetaData()


def _spec_column(spec: ColumnSpec) -> sa.Column[Any]:
    sql_type: sa.types.TypeEngine[Any] = _SQL_TYPES[spec.type]() if spec.type != "str" else sa.String(256)
    return sa.Column(spec.name, sql_type, nullable=True, comment=spec.doc)


runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("cell_key", sa.String(512), nullable=False, unique=True),
    sa.Column("grid", sa.String(128), nullable=True),
    *(_spec_column(c) for c in KEY_COLUMNS),
    sa.Column(
        "status",
        sa.Enum(
            RunStatus,
            name="run_status",
            native_enum=False,
            length=16,
            create_constraint=True,
            values_callable=lambda e: [m.value for m in e],
        ),
        nullable=False,
        index=True,
    ),
    sa.Column("attempts", sa.Integer, nullable=False, default=1),
    sa.Column("worker", sa.String(256), nullable=True),
    sa.Column("heartbeat_at", sa.DateTime, nullable=True),
    sa.Column("started_at", sa.DateTime, nullable=True),
    sa.Column("finished_at", sa.DateTime, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    *(_spec_column(c) for c in METRIC_COLUMNS),
    *(sa.Column(c.name, _JSON, nullable=True, comment=c.doc) for c in JSON_COLUMNS),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("domain", sa.String(256), nullable=True),
    sa.Column("similarity", _JSON, nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=True),
)

RUN_COLUMNS: tuple[str, ...] = tuple(c.name for c in runs.columns)
DATASET_COLUMNS: tuple[str, ...] = tuple(c.name for c in datasets.columns)
_DATETIME_COLUMNS = ("heartbeat_at", "started_at", "finished_at", "updated_at")
# Result keys naming these describe the cell or its bookkeeping, which claim() owns; complete() drops them.
_NOT_RESULT = frozenset(RUN_COLUMNS) - _METRIC_NAMES - _JSON_NAMES

# pip package providing each SQLAlchemy driver, for the "driver missing" error.
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


def make_cell_key(cell: Mapping[str, Any]) -> str:
    """The readable key of a cell.

    E.g. ``cats_and_dogs_filtered[n=200]/fine_tune_top/mobilenet_v2/s160/seed=1``. Optional parts appear only
    when set, so cells that differ only in augmentation or budgets get distinct keys: ``/aug`` when augment is
    true, ``/e=<epochs_budget>``, ``/t=<trials_budget>``, all before ``/seed=``.
    """
    missing = [k for k in _REQUIRED_KEYS if cell.get(k) is None]
    if missing:
        raise StudyError(f"cell is missing {', '.join(missing)}; a cell needs {', '.join(_REQUIRED_KEYS)}")
    key = f"{cell['dataset']}[n={cell['n_images']}]/{cell['strategy']}/{cell['backbone']}/s{cell['image_size']}"
    if cell.get("augment"):
        key += "/aug"
    if cell.get("epochs_budget") is not None:
        key += f"/e={cell['epochs_budget']}"
    if cell.get("trials_budget") is not None:
        key += f"/t={cell['trials_budget']}"
    return f"{key}/seed={cell['seed']}"


def _now() -> datetime:
    """Naive UTC: SQLite drops tzinfo, so every timestamp in the store is naive UTC by convention."""
    return datetime.now(UTC).replace(tzinfo=None)


def _this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_dead(pid: int) -> bool:
    """True when ``pid`` is not a live process on this host (a reaped or zombie process counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    except OSError:
        return False
    try:  # a SIGKILLed child not yet reaped is a zombie: it still answers kill(0) but will never heartbeat
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def _worker_dead(worker: str | None) -> bool:
    """True only when the worker ran on this host and its pid is gone; other hosts rely on the heartbeat."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return int(pid) != os.getpid() and _pid_dead(int(pid))


def _read_only(error: BaseException) -> bool:
    """SQLite's "attempt to write a readonly database", PostgreSQL's "read-only transaction"."""
    text = str(getattr(error, "orig", None) or error).lower()
    return "readonly database" in text or "read-only transaction" in text


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _plain_scalar(value: Any) -> Any:
    """A numpy scalar as the Python scalar it prints as (float32 0.9 -> 0.9, not 0.8999999761581421)."""
    dtype = getattr(value, "dtype", None)
    if dtype is None or getattr(value, "ndim", 1) != 0:
        return value
    if dtype.kind == "f" and dtype.itemsize < 8:
        return float(str(value))
    return value.item()


def _coerce(spec: ColumnSpec, value: Any, where: str) -> Any:
    """Plain Python value of ``spec.type`` (numpy scalars included); NaN/inf floats become NULL."""
    if value is None:
        return None
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        value = _plain_scalar(value)
    try:
        if spec.type == "float":
            if isinstance(value, bool):
                raise TypeError
            f = float(value)
            return f if math.isfinite(f) else None
        if spec.type == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if spec.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.strip().lower() in ("true", "yes", "1")
            raise TypeError
        return str(value)
    except (TypeError, ValueError):
        raise StudyError(f"{where} field {spec.name!r} must be {spec.type}, got {value!r}") from None


def _jsonable(obj: Any, path: str = "result") -> Any:
    """Plain JSON data: numpy values become Python ones, NaN/inf become null (PostgreSQL rejects NaN)."""
    if obj is None or isinstance(obj, str | bool | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, f"{path}.{k}") for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_jsonable(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return _jsonable(obj.value, path)
    if getattr(obj, "dtype", None) is not None and isinstance(getattr(obj, "ndim", None), int):  # numpy
        if obj.ndim == 0:
            return _jsonable(_plain_scalar(obj), path)
        return [_jsonable(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    tolist = getattr(obj, "tolist", None)  # numpy arrays, pandas series
    if callable(tolist):
        return _jsonable(tolist(), path)
    raise TypeError(f"{path} is a {type(obj).__name__}, which cannot be stored as JSON")


def split_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for a result dict: flattened metrics, the JSON columns, and ``metrics`` for the rest.

    A nested ``result["metrics"]`` mapping is merged with the top level first, so both
    ``{"accuracy": .9}`` and ``{"metrics": {"accuracy": .9}}`` land in the ``accuracy`` column. Keys naming
    cell columns (``dataset``, ``seed``, ...) are dropped: the row already has them from the claim.
    """
    merged: dict[str, Any] = {}
    nested = result.get("metrics")
    if isinstance(nested, Mapping):
        merged.update(nested)
    merged.update({k: v for k, v in result.items() if k != "metrics"})
    values: dict[str, Any] = {c.name: None for c in METRIC_COLUMNS}
    extra: dict[str, Any] = {}
    for name, value in merged.items():
        if name in _METRIC_NAMES:
            continue
        if name in _JSON_NAMES:
            values[name] = _jsonable(value, name)
        elif name not in _NOT_RESULT:
            extra[name] = value
    for spec in METRIC_COLUMNS:
        values[spec.name] = _coerce(spec, merged.get(spec.name), "result")
    values["metrics"] = _jsonable(extra, "metrics") if extra else None
    for name in ("curves", "params", "provenance"):
        values.setdefault(name, None)
    return values


def _driver_hint(url: URL, error: BaseException) -> str:
    try:
        driver = url.get_dialect().driver
    except Exception:  # noqa: BLE001 - only used to word the hint
        driver = getattr(error, "name", None) or url.get_driver_name()
    package = _DRIVER_PACKAGES.get(str(driver).lower(), str(driver))
    return f"the {url.get_backend_name()} driver {driver!r} is not installed; pip install '{package}'"


def _restore(kwargs: dict[str, Any]) -> ResultsStore:
    return ResultsStore(**kwargs)


class ResultsStore:
    """Results of a sweep in a SQL database chosen by URL (``sqlite:///...``, ``postgresql+psycopg://...``).

    Parameters
    ----------
    url
        SQLAlchemy URL; ``sqlite://`` is an in-memory store (tests), ``default_url()`` the project default.
    stale_after
        Seconds without a heartbeat after which another worker may take over a ``running`` cell.
    worker
        Identity written to ``runs.worker``; defaults to ``host:pid`` of the calling process, evaluated at
        each call so a store inherited by a forked/spawned process reports the right pid.
    create
        Create missing tables. With ``create=False`` a missing SQLite file or table is an error (readers such
        as the exporter must not create an empty store by accident).

    Raises ``StudyError`` at construction when the URL is invalid, its driver is missing, or the database is
    unreachable.

    Examples
    --------
    >>> store = ResultsStore("sqlite://")
    >>> cell = dict(dataset="toy", n_images=10, strategy="linear_probe", backbone="tiny",
    ...             image_size=32, seed=0)
    >>> store.claim(cell)
    True
    >>> store.complete(make_cell_key(cell), {"accuracy": 0.5, "curves": {"loss": [1.0, 0.7]}})
    True
    >>> store.claim(cell)
    False
    """

    def __init__(
        self,
        url: str,
        *,
        stale_after: float = DEFAULT_STALE_AFTER,
        worker: str | None = None,
        create: bool = True,
    ) -> None:
        if stale_after <= 0:
            raise StudyError(f"stale_after must be positive seconds, got {stale_after!r}")
        self.url = str(url)
        self.stale_after = float(stale_after)
        self._worker = worker
        self._create = create
        self._parsed = self._parse(self.url)
        self.display_url = self._parsed.render_as_string(hide_password=True)
        self.engine = self._make_engine(self._parsed)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._init_schema()

    # -- construction ----------------------------------------------------------

    @staticmethod
    def _parse(url: str) -> URL:
        try:
            return make_url(url)
        except exc.ArgumentError:
            raise StudyError(
                f"invalid results store URL {url!r}; use e.g. sqlite:///results/study.db "
                "or postgresql+psycopg://user@host/dbname"
            ) from None

    def _make_engine(self, url: URL) -> Engine:
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
                            f"results store {self.display_url} is in a missing folder {parent}; "
                            "create it or fix the URL"
                        )
                    if not self._create and not Path(database).expanduser().exists():
                        raise StudyError(
                            f"no results store at {self.display_url}; run a sweep first or fix the store URL"
                        )
        elif backend in ("postgresql", "mysql", "mariadb") and "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = 10  # fail fast on a wrong host instead of hanging on TCP
        try:
            engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=not memory, **kwargs)
        except exc.NoSuchModuleError:
            raise StudyError(
                f"unknown database {url.drivername!r} in results store URL {self.display_url!r}; "
                "use sqlite:///path.db or postgresql+psycopg://user@host/dbname"
            ) from None
        except ImportError as error:
            raise StudyError(f"cannot open results store {self.display_url}: {_driver_hint(url, error)}") from None
        if backend == "sqlite":
            _sqlite_setup(engine, memory=memory)
        if not memory:
            _fork_safe(engine)
        return engine

    def _init_schema(self) -> None:
        try:
            if self._create:
                try:
                    metadata.create_all(self.engine)
                except (exc.IntegrityError, exc.ProgrammingError):
                    metadata.create_all(self.engine)  # lost a CREATE race with another process; now it exists
            names = sa.inspect(self.engine).get_table_names()
        except exc.DBAPIError as error:
            self.engine.dispose()
            if _read_only(error):
                raise self._operational_error(error) from None
            raise StudyError(
                f"cannot open results store {self.display_url}: {_first_line(error)}; "
                "check the path/host, credentials and that the database server is running"
            ) from None
        if "runs" not in names:
            raise StudyError(f"results store {self.display_url} has no runs table; run a sweep first or fix the URL")
        have = {c["name"] for c in sa.inspect(self.engine).get_columns("runs")}
        missing = [c for c in RUN_COLUMNS if c not in have]
        if missing:
            raise StudyError(
                f"results store {self.display_url} has an older runs table (missing {', '.join(missing)}); "
                "export it and start a new store"
            )

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        """Pickle as the constructor arguments (an Engine cannot cross processes), e.g. into Ray tasks."""
        return _restore, (
            {
                "url": self.url,
                "stale_after": self.stale_after,
                "worker": self._worker,
                "create": self._create,
            },
        )

    def __repr__(self) -> str:
        return f"ResultsStore({self.display_url!r})"

    def close(self) -> None:
        """Close pooled connections (the store can still be used; it reconnects on demand)."""
        self.engine.dispose()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def worker(self) -> str:
        """``host:pid`` of the calling process, unless a fixed identity was given."""
        return self._worker or _this_worker()

    # -- transactions ----------------------------------------------------------

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: commit on success, roll back on error; DB operational errors become StudyError.

        IntegrityError is re-raised unchanged: ``claim`` relies on it to detect an existing row.
        """
        session = self._sessions()
        try:
            yield session
            session.commit()
        except exc.OperationalError as error:
            session.rollback()
            raise self._operational_error(error) from None
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _operational_error(self, error: BaseException) -> StudyError:
        """One line for a database that refused an operation: read-only (fix permissions) or busy (retry)."""
        if _read_only(error):
            return StudyError(
                f"the store {self.display_url} is read-only ({_first_line(error)}); make the file and its folder "
                "writable, or pass --store with a place you can write to"
            )
        return StudyError(
            f"results store {self.display_url} failed: {_first_line(error)}; if it is busy, retry or use "
            "PostgreSQL for many workers"
        )

    def check_writable(self) -> None:
        """Raise the read-only error now, before any training, rather than at the first cell's claim.

        An UPDATE of no rows still needs a write transaction, so SQLite (read-only file, ``mode=ro``) and
        PostgreSQL (read-only role or replica) refuse it without changing anything.
        """
        with self.session() as s:
            s.execute(sa.update(runs).where(sa.false()).values(status=runs.c.status))

    # -- claiming --------------------------------------------------------------

    def _cell_values(self, cell: Mapping[str, Any]) -> dict[str, Any]:
        key = cell.get("cell_key") or make_cell_key(cell)
        missing = [k for k in _REQUIRED_KEYS if cell.get(k) is None]
        if missing:
            raise StudyError(f"cell {key!r} is missing {', '.join(missing)}")
        values: dict[str, Any] = {"cell_key": str(key), "grid": cell.get("grid")}
        for spec in KEY_COLUMNS:
            values[spec.name] = _coerce(spec, cell.get(spec.name), f"cell {key!r}")
        if values["grid"] is not None:
            values["grid"] = str(values["grid"])
        for name, value in values.items():  # PostgreSQL enforces VARCHAR lengths; SQLite would silently accept
            limit = getattr(runs.c[name].type, "length", None)
            if isinstance(value, str) and limit is not None and len(value) > limit:
                raise StudyError(f"cell {key[:80]!r}...: {name} is {len(value)} characters, more than {limit}")
        return values

    def _reclaim_reason(self, row: sa.Row[Any], retry_failed: bool, cutoff: datetime) -> str | None:
        if row.status == RunStatus.FAILED:
            return "failed" if retry_failed else None
        if row.status == RunStatus.RUNNING:
            if row.heartbeat_at is None or row.heartbeat_at < cutoff:
                return "stale"
            if _worker_dead(row.worker):
                return "dead"
        return None

    def claim(self, cell: Mapping[str, Any], *, retry_failed: bool = False) -> bool:
        """Take a cell for this worker; True means "run it now", False means "someone has or had it".

        Race-free across processes and hosts: a new cell is an INSERT guarded by the unique ``cell_key``; an
        existing one is taken over only by an UPDATE whose WHERE re-checks the status and ``attempts`` seen
        (a compare-and-swap; ``attempts`` is the row's version) plus the staleness condition, so of several
        racing workers exactly one sees rowcount 1.

        Re-claimable: ``running`` with a heartbeat older than ``stale_after`` or a dead pid on this host (a
        SIGKILLed run resumes); ``failed`` only with ``retry_failed=True``. Never: ``complete``, or
        ``running`` with a fresh heartbeat and a live (or remote) worker.
        """
        values = self._cell_values(cell)
        key = values["cell_key"]
        for _ in range(3):  # an INSERT that conflicts with a row deleted meanwhile is simply tried again
            now = _now()
            claimed = {
                "status": RunStatus.RUNNING,
                "worker": self.worker,
                "heartbeat_at": now,
                "started_at": now,
            }
            try:
                with self.session() as s:
                    s.execute(sa.insert(runs).values(**values, **claimed, attempts=1))
                return True
            except exc.IntegrityError:
                pass
            cutoff = now - timedelta(seconds=self.stale_after)
            with self.session() as s:
                row = s.execute(
                    sa.select(runs.c.status, runs.c.attempts, runs.c.worker, runs.c.heartbeat_at).where(
                        runs.c.cell_key == key
                    )
                ).one_or_none()
                if row is None:
                    continue
                reason = self._reclaim_reason(row, retry_failed, cutoff)
                if reason is None:
                    return False
                where = [runs.c.cell_key == key, runs.c.status == row.status, runs.c.attempts == row.attempts]
                if reason == "stale":
                    where.append(sa.or_(runs.c.heartbeat_at.is_(None), runs.c.heartbeat_at < cutoff))
                elif reason == "dead":
                    where.append(runs.c.worker == row.worker)
                reset = {c.name: None for c in (*METRIC_COLUMNS, *JSON_COLUMNS)}
                result = s.execute(
                    sa.update(runs)
                    .where(*where)
                    .values(
                        **{k: v for k, v in values.items() if k != "cell_key"},
                        **claimed,
                        **reset,
                        attempts=runs.c.attempts + 1,
                        finished_at=None,
                        error=None,
                    )
                )
                return result.rowcount == 1
        return False

    def heartbeat(self, cell_key: str) -> bool:
        """Mark this worker's claim alive; False means the claim was lost (taken over, completed, failed)."""
        with self.session() as s:
            result = s.execute(
                sa.update(runs)
                .where(
                    runs.c.cell_key == cell_key,
                    runs.c.status == RunStatus.RUNNING,
                    runs.c.worker == self.worker,
                )
                .values(heartbeat_at=_now())
            )
            return result.rowcount == 1

    @contextlib.contextmanager
    def heartbeating(self, cell_key: str, interval: float | None = None) -> Iterator[threading.Event]:
        """Heartbeat from a daemon thread while the block runs (training may outlast ``stale_after``).

        Yields an Event that is set if the claim is lost, so a long run can stop early.
        """
        every = interval if interval is not None else self.stale_after / 4
        stop, lost = threading.Event(), threading.Event()
        worker = self.worker  # the thread must beat as the claiming process

        def beat() -> None:
            while not stop.wait(every):
                try:
                    with self.session() as s:
                        alive = (
                            s.execute(
                                sa.update(runs)
                                .where(
                                    runs.c.cell_key == cell_key,
                                    runs.c.status == RunStatus.RUNNING,
                                    runs.c.worker == worker,
                                )
                                .values(heartbeat_at=_now())
                            ).rowcount
                            == 1
                        )
                except StudyError:
                    continue  # transient (busy database); the next beat retries well before stale_after
                if not alive:
                    lost.set()
                    return

        thread = threading.Thread(target=beat, name=f"heartbeat {cell_key}", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            stop.set()
            thread.join()

    def complete(self, cell_key: str, result: Mapping[str, Any]) -> bool:
        """Store a cell's result and mark it complete, in ONE UPDATE (a killed process leaves no partial row).

        Returns False when the cell is no longer ``running`` (another worker completed it first; this result
        is discarded). A ``running`` row taken over by another worker is still completed: the first finished
        result wins. Raises StudyError for a cell that was never claimed.
        """
        values = split_result(result)
        now = _now()
        with self.session() as s:
            updated = s.execute(
                sa.update(runs)
                .where(runs.c.cell_key == cell_key, runs.c.status == RunStatus.RUNNING)
                .values(
                    **values,
                    status=RunStatus.COMPLETE,
                    worker=self.worker,
                    heartbeat_at=now,
                    finished_at=now,
                    error=None,
                )
            ).rowcount
            if updated == 1:
                return True
            exists = s.execute(sa.select(runs.c.id).where(runs.c.cell_key == cell_key)).first() is not None
        if not exists:
            raise StudyError(f"cannot complete {cell_key!r}: it was never claimed; call claim(cell) first")
        return False

    def fail(self, cell_key: str, error: str) -> bool:
        """Mark this worker's claim failed with an error text; False when the claim was already lost."""
        with self.session() as s:
            return (
                s.execute(
                    sa.update(runs)
                    .where(
                        runs.c.cell_key == cell_key,
                        runs.c.status == RunStatus.RUNNING,
                        runs.c.worker == self.worker,
                    )
                    .values(status=RunStatus.FAILED, error=str(error)[:_MAX_ERROR_CHARS], finished_at=_now())
                ).rowcount
                == 1
            )

    def release(self, cell_key: str | None = None, reason: str = "interrupted") -> int:
        """Give back this worker's ``running`` claim(s) (one key, or all when None): the cell is pending again.

        Used when a sweep is interrupted (SIGINT/SIGTERM): the row stays ``running`` with no heartbeat, exactly
        what a SIGKILLed worker leaves once its heartbeat is stale, so the next ``claim`` takes it over at once
        (``attempts`` counts the try) and nothing is recorded as failed. Returns the number of rows released.
        """
        where = [runs.c.status == RunStatus.RUNNING, runs.c.worker == self.worker]
        if cell_key is not None:
            where.append(runs.c.cell_key == cell_key)
        with self.session() as s:
            return int(s.execute(sa.update(runs).where(*where).values(heartbeat_at=None, error=reason)).rowcount)

    # -- reading ---------------------------------------------------------------

    def status_counts(self) -> dict[str, int]:
        """Rows per status, every status present (zeros included)."""
        counts = {s.value: 0 for s in RunStatus}
        with self.session() as s:
            for status, n in s.execute(sa.select(runs.c.status, sa.func.count()).group_by(runs.c.status)):
                counts[RunStatus(status).value] = int(n)
        return counts

    def finished_keys(self) -> set[str]:
        """Keys of ``complete`` cells (a sweep skips these)."""
        with self.session() as s:
            return set(s.scalars(sa.select(runs.c.cell_key).where(runs.c.status == RunStatus.COMPLETE)))

    def rows(self, status: str | RunStatus | None = None) -> list[dict[str, Any]]:
        """All rows (or those with ``status``) as dicts in claim order; JSON columns decoded, status a str."""
        query = sa.select(runs).order_by(runs.c.id)
        if status is not None:
            try:
                query = query.where(runs.c.status == RunStatus(status))
            except ValueError:
                raise StudyError(
                    f"unknown status {status!r}; known statuses: {', '.join(s.value for s in RunStatus)}"
                ) from None
        with self.session() as s:
            out = [dict(r._mapping) for r in s.execute(query)]
        for row in out:
            row["status"] = RunStatus(row["status"]).value
        return out

    def to_frame(self, status: str | RunStatus | None = None) -> pd.DataFrame:
        """Rows as a DataFrame with stable dtypes (nullable ints/bools, UTC times), JSON columns decoded."""
        return _frame(self.rows(status), RUN_COLUMNS, (*KEY_COLUMNS, *METRIC_COLUMNS))

    # -- per-dataset measurements ----------------------------------------------

    def put_dataset(self, name: str, *, domain: str | None = None, similarity: Mapping[str, Any] | None = None) -> None:
        """Record a dataset's domain and similarity scores; scores are merged into those already stored."""
        scores = _jsonable(dict(similarity or {}), "similarity")
        for _ in range(3):
            with contextlib.suppress(exc.IntegrityError), self.session() as s:
                row = s.execute(
                    sa.select(datasets.c.domain, datasets.c.similarity).where(datasets.c.name == name).with_for_update()
                ).one_or_none()
                if row is None:
                    s.execute(
                        sa.insert(datasets).values(
                            name=name, domain=domain, similarity=scores or None, updated_at=_now()
                        )
                    )
                else:
                    merged = {**(row.similarity or {}), **scores}
                    s.execute(
                        sa.update(datasets)
                        .where(datasets.c.name == name)
                        .values(
                            domain=domain if domain is not None else row.domain,
                            similarity=merged or None,
                            updated_at=_now(),
                        )
                    )
                return
        raise StudyError(f"could not record dataset {name!r} in {self.display_url}: concurrent writers; retry")

    def datasets(self) -> list[dict[str, Any]]:
        """All dataset rows as dicts, by name."""
        with self.session() as s:
            return [dict(r._mapping) for r in s.execute(sa.select(datasets).order_by(datasets.c.name))]

    def datasets_frame(self) -> pd.DataFrame:
        """Dataset rows as a DataFrame (``similarity`` decoded)."""
        return _frame(self.datasets(), DATASET_COLUMNS, ())


def _frame(rows: list[dict[str, Any]], columns: tuple[str, ...], specs: tuple[ColumnSpec, ...]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(columns))
    dtypes = {"int": "Int64", "float": "float64", "bool": "boolean"}
    for spec in specs:
        if spec.type in dtypes:
            frame[spec.name] = frame[spec.name].astype(dtypes[spec.type])
    for name in ("id", "attempts"):
        if name in frame:
            frame[name] = frame[name].astype("Int64")
    for name in _DATETIME_COLUMNS:
        if name in frame:
            frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame


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
