"""Benchmark: the same cells of a grid with 1 local worker and with N, side by side in one run.

    python -m bench.bench_workers [--grid quick] [--every 8] [--workers 2]

Takes a deterministic sample of the grid's cells (every ``--every``-th cell of each strategy, in the grid's
order, so every strategy and size band is represented in proportion) and runs it twice through the sweep
engine's local executor (``study.engine.executors.run_local``): once with one worker, once with ``--workers``. Each
run gets its own empty results store and its own activation cache, so neither profits from the other; the
decoded-image cache is shared and warmed before timing (decoding is a one-off cost per dataset, not what the
worker count changes). Prints wall times, the speedup, and how far the two runs' accuracies differ (workers
split the CPU threads, so floating-point sums may differ in the last bits, not more).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def sample_cells(grid_name: str, every: int) -> list[Any]:
    """Every ``every``-th cell of each strategy, keeping the grid's order (deterministic)."""
    from study.engine.grid import expand, get_grid

    cells, _ = expand(get_grid(grid_name))
    seen: dict[str, int] = defaultdict(int)
    picked = []
    for cell in cells:
        if seen[cell.strategy] % every == 0:
            picked.append(cell)
        seen[cell.strategy] += 1
    return picked


def warm_decoded(cells: list[Any], cache: Path) -> float:
    """Decode every dataset the cells use once, into the shared decoded-image cache; returns seconds."""
    from study import config
    from study.data import catalog as data

    t0 = time.perf_counter()
    for name, size in sorted({(c.dataset, c.image_size) for c in cells}):
        data.load(name, size, config.data_dirs(), cache)
    return time.perf_counter() - t0


def timed_run(cells: list[Any], workers: int, root: Path, decoded: Path) -> tuple[float, Any, dict[str, float]]:
    """One sweep over ``cells`` into a fresh store and activation cache; (wall seconds, summary, accuracies)."""
    from study import config
    from study.engine.executors import RunnerConfig, run_local
    from study.engine.store import ResultsStore

    cache = root / f"cache-{workers}"
    cache.mkdir(parents=True)
    (cache / "decoded").symlink_to(decoded, target_is_directory=True)
    url = f"sqlite:///{root / f'store-{workers}.db'}"
    cfg = RunnerConfig(store_url=url, cache_dir=str(cache), data_dirs=tuple(str(d) for d in config.data_dirs()),
                       keras_home=str(config.keras_home()))
    t0 = time.perf_counter()
    summary = run_local(cells, cfg, workers=workers)
    seconds = time.perf_counter() - t0
    frame = ResultsStore(url).to_frame(status="complete")
    return seconds, summary, dict(zip(frame["cell_key"], frame["accuracy"], strict=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_workers", description=__doc__.splitlines()[0])
    p.add_argument("--grid", default="quick")
    p.add_argument("--every", type=int, default=8, help="take every k-th cell of each strategy (default 8)")
    p.add_argument("--workers", type=int, default=2, help="the worker count compared with 1 (default 2)")
    args = p.parse_args(argv)

    cells = sample_cells(args.grid, args.every)
    by_strategy: dict[str, int] = defaultdict(int)
    for c in cells:
        by_strategy[c.strategy] += 1
    print(f"{len(cells)} cells of grid {args.grid!r} (every {args.every}th per strategy): "
          + ", ".join(f"{s} {n}" for s, n in sorted(by_strategy.items())))  # fmt: skip
    root = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    try:
        decoded = root / "decoded"
        print(f"decoded-image cache warmed in {warm_decoded(cells, root / 'warm'):.0f} s")
        (root / "warm" / "decoded").rename(decoded)
        results = {}
        for workers in (1, args.workers):
            seconds, summary, acc = timed_run(cells, workers, root, decoded)
            results[workers] = (seconds, acc)
            print(f"workers={workers}: {seconds:.1f} s wall, {summary.complete} complete, {summary.failed} failed")
        (t1, a1), (tn, an) = results[1], results[args.workers]
        common = sorted(set(a1) & set(an))
        diffs = [abs(a1[k] - an[k]) for k in common]
        print(f"\nspeedup {args.workers} workers vs 1: {t1 / tn:.2f}x ({t1:.1f} s -> {tn:.1f} s, {len(cells)} cells)")
        if diffs:
            same = sum(d == 0 for d in diffs)
            print(f"accuracy: {same}/{len(diffs)} cells identical, largest difference {max(diffs):.4f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
