"""``ResultsStore``: the claim protocol (claim, heartbeat, complete, fail, release), reading rows back, and the
per-dataset measurements table. The schema, value coercion and database set-up live in the sibling modules."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.orm import Session, sessionmaker

from study.engine.store.connection import first_line, make_engine, parse_url, read_only
from study.engine.store.liveness import this_worker, worker_dead
from study.engine.store.schema import (
    ADDED_COLUMNS,
    DATASET_COLUMNS,
    JSON_COLUMNS,
    KEY_COLUMNS,
    METRIC_COLUMNS,
    REQUIRED_KEYS,
    RUN_COLUMNS,
    RunStatus,
    datasets,
    make_cell_key,
    metadata,
    runs,
    utc_now,
)
from study.engine.store.values import coerce, jsonable, rows_frame, split_result
from study.errors import StudyError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_STALE_AFTER = 600.0
"""Seconds without a heartbeat after which a ``running`` cell is presumed dead and may be claimed again."""

_MAX_ERROR_CHARS = 64_000  # a full traceback fits; a runaway log does not bloat the table


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
        self._parsed = parse_url(self.url)
        self.display_url = self._parsed.render_as_string(hide_password=True)
        self.engine = make_engine(self._parsed, create=create)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._init_schema()

    # -- construction ----------------------------------------------------------

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
            if read_only(error):
                raise self._operational_error(error) from None
            raise StudyError(
                f"cannot open results store {self.display_url}: {first_line(error)}; "
                "check the path/host, credentials and that the database server is running"
            ) from None
        if "runs" not in names:
            raise StudyError(f"results store {self.display_url} has no runs table; run a sweep first or fix the URL")
        have = {c["name"] for c in sa.inspect(self.engine).get_columns("runs")}
        missing = [c for c in RUN_COLUMNS if c not in have]
        if missing and set(missing) <= ADDED_COLUMNS:
            missing = self._add_columns(missing)
        if missing:
            raise StudyError(
                f"results store {self.display_url} has an older runs table (missing {', '.join(missing)}); "
                "export it and start a new store"
            )

    def _add_columns(self, names: list[str]) -> list[str]:
        """Migrate an older ``runs`` table: add the nullable key columns it lacks; returns those still missing.

        Existing rows read NULL there (ordinary cells), which is what a new store writes for them too.
        """
        for name in names:
            column = runs.c[name]
            sql_type = column.type.compile(dialect=self.engine.dialect)
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.text(f'ALTER TABLE runs ADD COLUMN "{name}" {sql_type}'))
            except exc.DBAPIError:
                pass  # read-only, or another process added it meanwhile: the re-inspection below decides
        have = {c["name"] for c in sa.inspect(self.engine).get_columns("runs")}
        return [n for n in names if n not in have]

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
        return self._worker or this_worker()

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
        if read_only(error):
            return StudyError(
                f"the store {self.display_url} is read-only ({first_line(error)}); make the file and its folder "
                "writable, or pass --store with a place you can write to"
            )
        return StudyError(
            f"results store {self.display_url} failed: {first_line(error)}; if it is busy, retry or use "
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
        missing = [k for k in REQUIRED_KEYS if cell.get(k) is None]
        if missing:
            raise StudyError(f"cell {key!r} is missing {', '.join(missing)}")
        values: dict[str, Any] = {"cell_key": str(key), "grid": cell.get("grid")}
        for spec in KEY_COLUMNS:
            values[spec.name] = coerce(spec, cell.get(spec.name), f"cell {key!r}")
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
            if worker_dead(row.worker):
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
            now = utc_now()
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
                .values(heartbeat_at=utc_now())
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
                                .values(heartbeat_at=utc_now())
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
        now = utc_now()
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
                    .values(status=RunStatus.FAILED, error=str(error)[:_MAX_ERROR_CHARS], finished_at=utc_now())
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
        return rows_frame(self.rows(status), RUN_COLUMNS, (*KEY_COLUMNS, *METRIC_COLUMNS))

    def import_rows(self, rows: list[Mapping[str, Any]]) -> int:
        """Insert finished rows exported from another store (``python -m study.analysis.restore``).

        Only ``complete`` rows whose ``cell_key`` this store lacks are inserted, with their original worker and
        timestamps; a key already here (whatever its state) is left alone, so restoring twice, or restoring into a
        store that ran some of the same cells, never overwrites a result. Returns the number inserted.
        """
        have = self._keys()
        fresh: list[dict[str, Any]] = []
        for row in rows:
            if row.get("status") != RunStatus.COMPLETE.value or row.get("cell_key") in have:
                continue
            values = {k: _plain(row.get(k)) for k in RUN_COLUMNS if k != "id"}
            values["status"] = RunStatus.COMPLETE
            values["attempts"] = values.get("attempts") or 1
            fresh.append(values)
            have.add(row["cell_key"])
        if fresh:
            with self.session() as s:
                s.execute(sa.insert(runs), fresh)
        return len(fresh)

    def _keys(self) -> set[str]:
        with self.session() as s:
            return set(s.scalars(sa.select(runs.c.cell_key)))

    # -- per-dataset measurements ----------------------------------------------

    def put_dataset(self, name: str, *, domain: str | None = None, similarity: Mapping[str, Any] | None = None) -> None:
        """Record a dataset's domain and similarity scores; scores are merged into those already stored."""
        scores = jsonable(dict(similarity or {}), "similarity")
        for _ in range(3):
            with contextlib.suppress(exc.IntegrityError), self.session() as s:
                row = s.execute(
                    sa.select(datasets.c.domain, datasets.c.similarity).where(datasets.c.name == name).with_for_update()
                ).one_or_none()
                if row is None:
                    s.execute(
                        sa.insert(datasets).values(
                            name=name, domain=domain, similarity=scores or None, updated_at=utc_now()
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
                            updated_at=utc_now(),
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
        return rows_frame(self.datasets(), DATASET_COLUMNS, ())


def _plain(value: Any) -> Any:
    """A value read back from an export as the store holds it: None for missing, naive UTC datetimes, Python scalars."""
    import math

    import pandas as pd

    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        stamp = value.tz_convert("UTC") if value.tzinfo is not None else value
        return stamp.tz_localize(None).to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()  # numpy scalar
    return value
