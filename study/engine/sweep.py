"""Run a list of cells against a results store: claim, train, record; resumable and exactly-once.

The store decides what runs: a cell is trained only after ``claim`` succeeds, so rerunning a command skips
finished cells, a second sweep on the same store never trains a cell the first one holds, and a SIGKILLed
sweep's cells become claimable again (dead pid or stale heartbeat). A cell that raises is recorded as failed
with its error and the sweep goes on; ``retry_failed`` reruns those. An interruption (SIGINT/SIGTERM, see
``stop_on_signals``) is not a failure: the cell in flight is released (pending again) and the sweep stops.
Progress is a tqdm bar over cells with an ETA, plus a one-line summary per finished cell, mirrored to a log file.
"""

from __future__ import annotations

import logging
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.engine.grid import Cell
from study.engine.store import ResultsStore
from study.train.strategies import get_strategy

log = logging.getLogger("study.engine.sweep")

# Cost hints per strategy (seconds per training image and epoch at 96 px, fixed seconds per trial) live in the
# strategy records (``study.train.strategies``), used only until the store has finished rows to learn from.
EXTRACT_SECONDS_PER_IMAGE = 0.006  # frozen forward pass at 96 px, paid once per image and backbone
# A deploy cell's Keras save/reload, three TFLite conversions and their evaluation: the reference deploy grid's
# 9 cells (96 px) spent 7-30 s (median 19 s, mean 22 s) between their training's end and their row's completion.
DEPLOY_SECONDS = 20.0


@dataclass
class SweepSummary:
    complete: int = 0
    failed: int = 0
    skipped: int = 0  # already complete or held by another live worker
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False  # stopped by SIGINT/SIGTERM; the cells in flight were released, not failed


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum: int, _frame: object) -> None:
    """First SIGINT/SIGTERM: ignore any further ones (cleanup must not be cut short), then stop the sweep."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    # Optuna logs an interrupted trial as a failure with its traceback; the user asked for the stop.
    logging.getLogger("optuna").setLevel(logging.CRITICAL)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """Make SIGINT and SIGTERM raise KeyboardInterrupt once, in this process's main thread.

    ``run_cells`` turns that into a clean stop. A SIGINT that was ignored when the process started (``nohup``,
    a background job) stays ignored, as Python itself does.
    """
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _interrupt)


def estimate_seconds(cell: Cell, history: dict[tuple, tuple[float, float]] | None = None) -> float:
    """Expected wall time of a cell: fitted on the store's finished cells when known, else a cost model."""
    scale = (cell.image_size / 96) ** 2
    deploy = DEPLOY_SECONDS if cell.deploy else 0.0
    if history:
        fitted = history.get((cell.strategy, cell.backbone, cell.image_size))
        if fitted is not None:
            fixed, per_image = fitted
            return (fixed + per_image * cell.n_images) * cell.trials + deploy
    strategy = get_strategy(cell.strategy)
    per = strategy.seconds_per_image_epoch * scale
    extract = EXTRACT_SECONDS_PER_IMAGE * scale * cell.n_images if strategy.pretrained else 0.0
    train = 0.8 * cell.n_images * cell.epochs * per  # 80 % of N trains; the full epoch budget (an upper bound)
    return cell.trials * (strategy.fixed_seconds + train) + extract / 4 + deploy


def history_rates(frame: Any) -> dict[tuple, tuple[float, float]]:
    """Per (strategy, backbone, image size): seconds per trial = fixed + per_image x N, fitted on finished rows.

    ``frame``: the store's complete rows (``ResultsStore.to_frame``). A cell's cost is a fixed part (building and
    tracing models) plus a part that grows with N; with one size measured so far the fixed part is all that is known,
    and larger sizes are underestimated until more finish.
    """
    import numpy as np

    if frame.empty:
        return {}
    wall = frame["metrics"].map(lambda m: m.get("wall_seconds") if isinstance(m, dict) else None)
    frame = frame.assign(per_trial=wall / frame["trials_budget"].fillna(1)).dropna(subset=["per_trial"])
    fits: dict[tuple, tuple[float, float]] = {}
    for key, g in frame.groupby(["strategy", "backbone", "image_size"]):
        n, t = g["n_images"].to_numpy(float), g["per_trial"].to_numpy(float)
        if np.unique(n).size >= 2:
            slope, intercept = np.polyfit(n, t, 1)
            fits[key] = (max(float(intercept), 0.0), max(float(slope), 0.0))
        else:
            fits[key] = (float(np.median(t)), 0.0)
    return fits


def run_cells(
    cells: Sequence[Cell],
    store: ResultsStore,
    run_cell: Callable[[Cell], dict[str, Any]],
    retry_failed: bool = False,
    progress: bool = True,
    stop: Callable[[], bool] | None = None,
) -> SweepSummary:
    """Claim and run each cell in order; never raises for a failing cell (it is recorded instead).

    KeyboardInterrupt (Ctrl-C, or SIGTERM through ``stop_on_signals``) releases this worker's claim and returns
    with ``interrupted`` set; so does ``stop()`` turning true, checked before each claim (a parent process
    asking its workers to stop).
    """
    from tqdm import tqdm

    summary = SweepSummary()
    t0 = time.perf_counter()
    bar = tqdm(total=len(cells), unit="cell", disable=not progress, dynamic_ncols=True)
    try:
        for cell in cells:
            if stop is not None and stop():
                summary.interrupted = True
                break
            bar.set_postfix_str(cell.key[-60:], refresh=False)
            if not store.claim({**cell.store_fields(), "cell_key": cell.key}, retry_failed=retry_failed):
                summary.skipped += 1
                bar.update(1)
                continue
            started = time.perf_counter()
            try:
                with store.heartbeating(cell.key):
                    row = run_cell(cell)
                store.complete(cell.key, row)
                summary.complete += 1
                line = (
                    f"done   {cell.key}  acc={row['accuracy']:.3f} bal={row['balanced_accuracy']:.3f}"
                    f"{'  DEGENERATE' if row.get('degenerate') else ''}  {time.perf_counter() - started:.1f}s"
                )
                log.info(line)
                bar.write(line)
            except Exception as exc:  # a failing cell must not stop the sweep
                message = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
                store.fail(cell.key, f"{message}\n{traceback.format_exc()[-4000:]}")
                summary.failed += 1
                summary.failures.append((cell.key, message))
                log.error("failed %s: %s", cell.key, message)
                bar.write(f"FAILED {cell.key}  {message}")
            bar.update(1)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        if summary.interrupted:
            # Whatever this process holds (the cell in flight, or one claimed as the signal came) is pending again.
            released = store.release(reason="interrupted by the user (SIGINT/SIGTERM); claimable again")
            log.warning("interrupted: %d cells done, %d released", summary.complete, released)
    summary.seconds = time.perf_counter() - t0
    return summary


def setup_logging(log_dir: Path) -> Path:
    """Log to ``log_dir/sweep-<time>.log`` as well as the console summary lines."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_to_file(path)
    return path


def log_to_file(path: Path | str) -> None:
    """Append the ``study`` loggers' records to ``path`` (the sweep's log; worker processes add to it too)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("study")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
