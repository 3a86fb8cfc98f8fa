"""Profile: where a cell's seconds go, phase by phase, on a deterministic sample of a grid's cells.

    python -m bench.profile_cells [--grid quick] [--every 10] [--out profile.csv]

Runs the sample (``bench.bench_workers.sample_cells``: every k-th cell of each strategy, in grid order) in this
process through the sweep engine (``study.engine.sweep.run_cells``: claim, run, record into a fresh SQLite store,
a fresh activation cache, the decoded-image cache warmed first), with timers wrapped around the functions that do
each kind of work. Time is charged *exclusively* to the innermost timed phase running (a stack): tracing inside a
fit counts as tracing, not training; the rest of a cell's wall time is ``other`` (Python glue, tf.data set-up,
garbage collection).

Phases (what is wrapped):

- ``load``: reading/decoding a dataset (``study.data.catalog.load``); ``split``: drawing the cell's subsets;
- ``extract``: the activation cache (frozen forward passes, reading/writing cached rows);
- ``build``: building Keras models (backbones, the small CNN, functional models, heads as Keras layers);
- ``trace``: TensorFlow tracing Python functions into graphs (``tf.function``/Keras' train and predict steps; the
  graph optimisation and kernel selection of a graph's first call are counted in the phase that calls it);
- ``train``: fitting (Keras ``fit``, the fast head loop, scikit-learn); ``eval``: predictions and metrics;
- ``costs``: parameter counts and the single-image CPU latency of the deployable model;
- ``tuning``: the tuner's bookkeeping around the trials; ``store``: claims and result writes.

Works on older revisions too (a wrapped name that does not exist there is skipped), so the same command
profiles the code before and after a change.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PHASES: dict[str, tuple[str, ...]] = {
    "load": ("study.data.catalog:load",),
    "split": ("study.engine.cell:CellRunner.cell_data",),
    "extract": ("study.cache.activations:ActivationCache.get",),
    "build": (
        "study.zoo.backbones:build_backbone",
        "study.zoo.backbones:split_at",
        "study.train.strategies:small_cnn",
        "study.train.strategies:deployable",
        "study.train.head:HeadWeights.to_keras",
        "keras.src.models.functional:Functional.__init__",
        "keras.src.models.sequential:Sequential.build",
    ),
    "trace": ("tensorflow.python.eager.polymorphic_function.tracing_compilation:trace_function",),
    "train": (
        "study.train.training:fit",
        "study.train.head:train_head",
        "sklearn.linear_model._logistic:LogisticRegression.fit",
    ),
    "eval": (
        "study.train.training:predict_proba",
        "study.train.strategies:_predict_images",
        "study.train.head:HeadWeights.predict_proba",
        "study.train.training:classification_metrics",
    ),
    "costs": ("study.train.training:cpu_latency_ms", "study.train.training:count_params"),
    "tuning": ("study.train.tuning:tune",),
    "store": (
        "study.engine.store.results:ResultsStore.claim",
        "study.engine.store.results:ResultsStore.complete",
    ),
}
ORDER = [*PHASES, "other"]


class PhaseClock:
    """Exclusive time per phase: the innermost running phase is charged, its callers are paused."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[tuple[str, float]] = []

    def enter(self, phase: str) -> None:
        now = time.perf_counter()
        if self._stack:
            outer, since = self._stack[-1]
            self.totals[outer] += now - since
        self._stack.append((phase, now))

    def leave(self) -> None:
        now = time.perf_counter()
        phase, since = self._stack.pop()
        self.totals[phase] += now - since
        if self._stack:
            self._stack[-1] = (self._stack[-1][0], now)

    def take(self) -> dict[str, float]:
        out, self.totals = dict(self.totals), defaultdict(float)
        return out


def _timed(fn: Callable[..., Any], phase: str, clock: PhaseClock) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        clock.enter(phase)
        try:
            return fn(*args, **kwargs)
        finally:
            clock.leave()

    wrapper.__profiled__ = True  # type: ignore[attr-defined]
    return wrapper


def instrument(clock: PhaseClock) -> list[str]:
    """Wrap every target that exists in this revision; returns the ones skipped."""
    skipped = []
    for phase, targets in PHASES.items():
        for target in targets:
            module_name, _, qual = target.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                skipped.append(target)
                continue
            owner: Any = module
            *path, attr = qual.split(".")
            for part in path:
                owner = getattr(owner, part, None)
            original = getattr(owner, attr, None) if owner is not None else None
            if original is None:
                skipped.append(target)
                continue
            wrapped = _timed(original, phase, clock)
            setattr(owner, attr, wrapped)
            if not path:  # a function imported by name elsewhere: rebind those references too
                for mod in list(sys.modules.values()):
                    if getattr(mod, "__dict__", None) is None:
                        continue
                    for key, value in list(vars(mod).items()):
                        if value is original:
                            setattr(mod, key, wrapped)
    return skipped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="quick")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="also write the per-cell table as CSV")
    parser.add_argument("--summarize", type=Path, default=None, help="only print the summary of a CSV from --out")
    args = parser.parse_args(argv)
    if args.summarize:
        import pandas as pd

        print(summary(pd.read_csv(args.summarize)))
        return

    import pandas as pd

    import study.engine.cell  # noqa: F401 - import everything the wrappers patch
    import study.train.strategies  # noqa: F401
    import study.train.tuning  # noqa: F401
    from bench.bench_workers import sample_cells, warm_decoded
    from study import config
    from study.engine.cell import CellRunner
    from study.engine.store import ResultsStore
    from study.engine.sweep import run_cells

    cells = sample_cells(args.grid, args.every)
    decoded = config.cache_dir()
    print(f"{len(cells)} cells of grid {args.grid!r} (every {args.every}th per strategy); warming decoded images ...")
    warm_decoded(cells, decoded)
    clock = PhaseClock()
    skipped = instrument(clock)
    if skipped:
        print("not in this revision (not timed):", ", ".join(skipped))
    rows = []
    with tempfile.TemporaryDirectory(prefix="profile-") as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        (cache / "decoded").symlink_to(decoded / "decoded")
        if (decoded / "keras").exists():
            (cache / "keras").symlink_to(decoded / "keras")
        runner = CellRunner(cache, config.data_dirs(), config.weights_dirs(), tuning_storage=None)
        store = ResultsStore(f"sqlite:///{tmp}/profile.db")
        t_all = time.perf_counter()
        for cell in cells:
            clock.take()
            t0 = time.perf_counter()
            run_cells([cell], store, runner.run, progress=False)
            wall = time.perf_counter() - t0
            phases = clock.take()
            row = {"strategy": cell.strategy, "n": cell.n_images, "dataset": cell.dataset,
                   "backbone": cell.backbone or "-", "wall": wall, **{p: phases.get(p, 0.0) for p in PHASES}}
            row["other"] = wall - sum(phases.values())
            rows.append(row)
            print(f"{cell.strategy:18s} n={cell.n_images:<5d} {cell.dataset[:28]:28s} wall {wall:6.1f}s  " +
                  " ".join(f"{p}={row[p]:.1f}" for p in ORDER if row[p] >= 0.05))  # fmt: skip
        total = time.perf_counter() - t_all
    frame = pd.DataFrame(rows)
    if args.out:
        frame.to_csv(args.out, index=False)
    print(summary(frame))
    print(f"total: {len(cells)} cells, {total:.1f} s")


def summary(frame: Any) -> str:
    """Mean seconds per cell by strategy and size band (a Markdown table), and each phase's share of all time."""
    import pandas as pd

    frame = frame.assign(band=pd.cut(frame.n, [0, 100, 500, 2000, 10**6], labels=["≤100", "≤500", "≤2000", ">2000"]))
    groups = frame.groupby(["strategy", "band"], observed=True)
    table = groups[["wall", *ORDER]].mean()
    counts = groups.size()
    lines = ["| strategy | n | cells | wall | " + " | ".join(ORDER) + " |", "|---|---|---|---|" + "---|" * len(ORDER)]
    for (strategy, band), row in table.iterrows():
        cells = " | ".join(f"{row[p]:.2f}" for p in ORDER)
        lines.append(f"| {strategy} | {band} | {counts[(strategy, band)]} | {row.wall:.2f} | {cells} |")
    share = frame[ORDER].sum() / frame.wall.sum()
    lines.append("")
    lines.append("share of all cell time: " + ", ".join(f"{p} {100 * share[p]:.0f} %" for p in ORDER))
    lines.append(f"cells whose training took < 1 s: mean wall {_overhead(frame):.2f} s")
    return "mean seconds per cell, by strategy and size band (exclusive phases):\n" + "\n".join(lines)


def _overhead(frame: Any) -> float:
    small = frame[frame.train < 1.0]
    return float(small.wall.mean()) if len(small) else float("nan")

if __name__ == "__main__":
    main()
