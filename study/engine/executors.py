"""Executors: who runs the cells. The rest of the engine only hands over cells and a store URL.

- ``local`` (default): ``workers`` processes on this machine. Each builds its own runner and store connection and
  walks the same ordered cell list, each from its own share onwards (``worker_order``); the store's claims make
  every cell run exactly once, so workers need no coordination of their own. CPU threads are split between workers
  (TF intra-op threads = cores/workers). Each worker talks to the parent over one pipe (its summary back, "stop"
  forward; no semaphores, so nothing can leak): on SIGINT/SIGTERM the parent asks every worker to stop and
  interrupts its cell in flight, and each worker releases its claim and reports, so an interrupted sweep loses
  nothing and prints no traceback.
- ``ray``: each cell a Ray task with resource requests (``num_cpus``, ``num_gpus``); workers resolve data and
  weights from their own data directory settings (a shared file system on a cluster) and write through the
  same store, so rows are written once per cell whoever runs it; Ray retries a task whose worker died, and the
  dead worker's claim is taken over (dead pid on the same host, or stale heartbeat elsewhere).

Every executor returns the same ``SweepSummary``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from study.config import cpu_count
from study.engine.grid import Cell
from study.engine.sweep import STOP_SIGNALS, SweepSummary, estimate_seconds, log_to_file, run_cells, stop_on_signals

log = logging.getLogger("study.engine.executors")
STOP_GRACE_SECONDS = 120.0  # after a stop request, how long a worker may take to release its cell and report


@dataclass(frozen=True)
class RunnerConfig:
    """What a worker needs to build its own ``CellRunner`` (plain data: it crosses process boundaries)."""

    store_url: str
    cache_dir: str
    data_dirs: tuple[str, ...]
    keras_home: str
    measure_latency: bool = True
    retry_failed: bool = False
    threads: int | None = None  # TF intra-op threads for this worker
    grid_file: str | None = None  # re-registers the grid file's own datasets in the worker
    plugins: tuple[str, ...] = ()  # modules imported in every worker (they register datasets, strategies...)
    log_file: str | None = None  # the sweep's log file, which local worker processes append to


def load_plugins(modules: tuple[str, ...] | list[str]) -> None:
    """Import user modules that extend the registries (``register_dataset``/``register_strategy``/...)."""
    import importlib

    from study.errors import StudyError

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise StudyError(f"plugin {name!r} cannot be imported ({exc}); check PYTHONPATH") from None


def _make_runner(cfg: RunnerConfig) -> Any:
    load_plugins(cfg.plugins)
    if cfg.threads:
        import tensorflow as tf
        from threadpoolctl import threadpool_limits

        tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, cfg.threads))
        # NumPy/SciPy/scikit-learn's BLAS and OpenMP pools too (linear probes, LogME): left at one thread per core
        # in every worker, two workers oversubscribe two cores and BLAS threads spin against each other.
        _WORKER_STATE["blas_limits"] = threadpool_limits(limits=cfg.threads)
    if cfg.grid_file:
        from study.engine.grid import load_grids

        load_grids(Path(cfg.grid_file))
    from study.config import WeightsDirs
    from study.engine.cell import CellRunner

    weights = WeightsDirs(Path(cfg.keras_home), Path(cfg.cache_dir))
    return CellRunner(Path(cfg.cache_dir), [Path(d) for d in cfg.data_dirs], weights, tuning_storage=cfg.store_url,
                      measure_latency=cfg.measure_latency)  # fmt: skip


def worker_order(cells: list[Cell], index: int, workers: int) -> list[Cell]:
    """Worker ``index``'s walk through the cells: the same list, started at its own share and wrapping around.

    Shares are cut where the dataset changes, at about equal estimated time, so each worker keeps its datasets,
    pooled models (``study.train.pool``) and fresh activations to itself instead of both workers alternating over
    one dataset; a worker done with its share goes on into the next one, and the store's claims still make every
    cell run exactly once.
    """
    if workers <= 1 or index == 0 or len(cells) < 2:
        return list(cells)
    costs = [estimate_seconds(c) for c in cells]
    target, running, start = sum(costs) * index / workers, 0.0, len(cells)
    for i, cost in enumerate(costs):
        if running >= target and cells[i].dataset != cells[i - 1].dataset:
            start = i
            break
        running += cost
    start %= len(cells)
    return list(cells[start:]) + list(cells[:start])


def run_local(cells: list[Cell], cfg: RunnerConfig, workers: int = 1, progress: bool = True) -> SweepSummary:
    """Run in this process (``workers=1``) or in ``workers`` spawned processes sharing the store.

    Returns with ``interrupted`` set when SIGINT/SIGTERM (``stop_on_signals``) stopped the sweep; the cells in
    flight are then pending again in the store.
    """
    from study.engine.store import ResultsStore

    if workers <= 1:
        runner = _make_runner(cfg)
        return run_cells(cells, ResultsStore(cfg.store_url), runner.run, cfg.retry_failed, progress)
    per_worker = max(1, cpu_count() // workers)
    cfg = RunnerConfig(**{**asdict(cfg), "threads": per_worker})
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    procs: list[tuple[Any, Any]] = []
    reports: dict[int, Any] = {}  # worker index -> its SweepSummary, the exception that stopped it, or None
    total = SweepSummary()
    try:
        with _signals_blocked():  # children start with the stop signals blocked until their handlers are in place
            for i in range(workers):
                here, there = ctx.Pipe()
                order = worker_order(cells, i, workers)
                proc = ctx.Process(target=_worker, args=([asdict(c) for c in order], asdict(cfg), there),
                                   name=f"study-worker-{i}")  # fmt: skip
                proc.start()
                there.close()
                procs.append((proc, here))
        _collect(procs, reports, cells, ResultsStore(cfg.store_url), progress)
    except KeyboardInterrupt:
        total.interrupted = True
        _stop_workers(procs, reports)
    for proc, conn in procs:
        proc.join()
        conn.close()
    for i, (proc, _) in enumerate(procs):
        report = reports.get(i)
        if isinstance(report, BaseException):
            raise report  # the worker could not start (a plugin or grid file error): the user's one-line error
        if report is None:
            total.failed += 1
            total.failures.append((proc.name, f"worker process died (exit code {proc.exitcode}); its cell is "
                                              "claimable again: rerun the same command"))  # fmt: skip
            continue
        total.complete += report.complete
        total.failed += report.failed
        total.failures += report.failures
        total.interrupted |= report.interrupted
    total.skipped = len(cells) - total.complete - total.failed
    total.seconds = time.perf_counter() - t0
    return total


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back (delivered when the block ends): a stop must not cut a message or a start in two."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _receive(conn: Any) -> Any:
    """A worker's report (its SweepSummary or the exception that stopped it); None when it died without one."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


def _collect(procs: list[tuple[Any, Any]], reports: dict[int, Any], cells: list[Cell], store: Any,
             progress: bool) -> None:  # fmt: skip
    """Wait for every worker's report into ``reports``, with a progress bar over the cells fed by the store."""
    from multiprocessing.connection import wait

    from tqdm import tqdm

    def finished() -> int:
        counts = store.status_counts()
        return counts.get("complete", 0) + counts.get("failed", 0)

    start = finished()
    with tqdm(total=len(cells), unit="cell", disable=not progress, dynamic_ncols=True) as bar:
        while len(reports) < len(procs):
            ready = wait([c for i, (_, c) in enumerate(procs) if i not in reports], timeout=2.0)
            for i, (_, conn) in enumerate(procs):
                if conn in ready:
                    with _signals_blocked():
                        reports[i] = _receive(conn)
            bar.update(min(len(cells), finished() - start) - bar.n)


def _stop_workers(procs: list[tuple[Any, Any]], reports: dict[int, Any]) -> None:
    """Ask every worker still running to stop (a message checked before each claim, SIGINT for its cell)."""
    from multiprocessing.connection import wait

    pipe = signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a worker that just exited: EPIPE, not death by SIGPIPE
    try:
        for i, (proc, conn) in enumerate(procs):
            if i in reports:
                continue
            with contextlib.suppress(OSError):
                conn.send("stop")
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGINT)
    finally:
        signal.signal(signal.SIGPIPE, pipe)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while len(reports) < len(procs) and time.monotonic() < deadline:
        ready = wait([c for i, (_, c) in enumerate(procs) if i not in reports], timeout=1.0)
        for i, (_, conn) in enumerate(procs):
            if conn in ready:
                reports[i] = _receive(conn)
    for i, (proc, _) in enumerate(procs):
        if i not in reports:  # stuck: its claim is taken over as a dead worker's on the next run
            log.warning("worker %s did not stop within %.0f s; killed", proc.name, STOP_GRACE_SECONDS)
            proc.kill()
            reports[i] = None


def _worker(cells: list[dict], cfg: dict, conn: Any) -> None:
    """A worker process: run the cells, send back the summary (or the user error that stopped it), quietly."""
    from study.engine.store import ResultsStore
    from study.errors import StudyError

    stop_on_signals()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the parent while starting us
    report: Any
    try:
        config = RunnerConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
        if config.log_file:
            log_to_file(config.log_file)
        else:  # no console fallback: a worker's records go to the log or nowhere, never over the progress bar
            logging.getLogger("study").addHandler(logging.NullHandler())
        runner = _make_runner(config)
        report = run_cells([Cell(**c) for c in cells], ResultsStore(config.store_url), runner.run,
                           config.retry_failed, progress=False, stop=conn.poll)  # fmt: skip
    except KeyboardInterrupt:
        report = SweepSummary(interrupted=True)
    except StudyError as exc:
        report = exc
    with contextlib.suppress(OSError), _signals_blocked():
        conn.send(report)
    conn.close()
    # Everything is stored and reported; skip the interpreter's teardown of TensorFlow (~6 s on 2 busy cores,
    # measured), which the parent would otherwise wait for. multiprocessing's own exit step still runs: it
    # unlinks the semaphores made here (tqdm's lock), which resource_tracker would otherwise report as leaked.
    from multiprocessing import util

    logging.shutdown()
    util._exit_function()
    os._exit(0)


# ------------------------------------------------------------------------------------------------------ Ray

_WORKER_STATE: dict[str, Any] = {}


def _ray_cell(cell: dict, cfg: dict) -> tuple[str, str, str]:
    """One cell as a Ray task: claim, run, record. The runner stays warm in the worker process."""
    from study.engine.store import ResultsStore

    config = RunnerConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    if _WORKER_STATE.get("config") != config:
        _WORKER_STATE.update(config=config, runner=_make_runner(config), store=ResultsStore(config.store_url))
    c = Cell(**cell)
    summary = run_cells([c], _WORKER_STATE["store"], _WORKER_STATE["runner"].run, config.retry_failed, progress=False)
    if summary.complete:
        return "complete", c.key, ""
    if summary.failed:
        return "failed", c.key, summary.failures[0][1]
    return "skipped", c.key, ""


def run_ray(
    cells: list[Cell],
    cfg: RunnerConfig,
    address: str | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    max_retries: int = 2,
    progress: bool = True,
    init_kwargs: dict[str, Any] | None = None,
) -> SweepSummary:
    """Each cell a Ray task (``num_cpus``/``num_gpus`` per cell); a task whose worker dies is retried."""
    import ray
    from tqdm import tqdm

    from study.errors import StudyError

    if not ray.is_initialized():
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, **(init_kwargs or {}))
        except Exception as exc:  # noqa: BLE001 - connection errors come in many types
            raise StudyError(f"cannot connect to Ray at {address or 'a new local cluster'}: {exc}") from None
    threads = max(1, int(num_cpus))
    cfg = RunnerConfig(**{**asdict(cfg), "threads": threads})
    task = ray.remote(_ray_cell).options(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=max_retries)
    t0 = time.perf_counter()
    keys = {task.remote(asdict(c), asdict(cfg)): c.key for c in cells}
    pending = list(keys)
    summary = SweepSummary()
    with tqdm(total=len(cells), unit="cell", disable=not progress, dynamic_ncols=True) as bar:
        while pending:
            try:
                ready, pending = ray.wait(pending, num_returns=1)
            except KeyboardInterrupt:  # a cancelled task gets KeyboardInterrupt: run_cells releases its claim
                for ref in pending:
                    ray.cancel(ref)
                summary.interrupted = True
                break
            for ref in ready:
                try:
                    status, key, message = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - the task raised outside the cell, or died too often
                    status, key, message = "failed", keys[ref], _task_error(exc)
                if status == "complete":
                    summary.complete += 1
                elif status == "failed":
                    summary.failed += 1
                    summary.failures.append((key, message))
                else:
                    summary.skipped += 1
                bar.write(f"{status:8s} {key}  {message}".rstrip())
                bar.update(1)
    summary.seconds = time.perf_counter() - t0
    return summary


def _task_error(exc: BaseException) -> str:
    """The cause of a failed Ray task in one line: RayTaskError's own first line is only the worker's title."""
    cause = getattr(exc, "cause", None) or exc
    return f"{type(cause).__name__}: {cause}".strip().splitlines()[0][:500]
