"""Benchmark: cells per hour of an older revision and of this tree, through the command line, side by side.

    python -m bench.bench_throughput --baseline REV [--grid quick] [--every 10] [--workers 2] [--chunks 4]
                                    [--datasets A,B]

Takes the same deterministic sample of a grid's cells as ``bench.bench_workers`` (every k-th cell of each
strategy, in grid order) and runs it through ``python -m study.run`` of revision ``REV`` (checked out into a
temporary ``git worktree``) and of the current tree. Each side gets its own empty results store and its own
empty activation cache; each side's decoded-image cache is warmed first by its own loader (decoding is a one-off
cost per dataset, not what is compared). The sample is cut into ``--chunks`` runs at dataset boundaries and the
sides alternate in the order A B, B A, A B, ... so that the machine's background load hits both alike. Every
run is a fresh command (its start-up counted, as a user's would be) with ``--workers`` local workers, domain
similarity off, and for each cell the same grid settings (written into a temporary grid file, one part per cell).

Prints each side's wall time, the per-strategy cell time (sum of the cells' own wall seconds), the largest
accuracy difference between the two sides per strategy, and as its last line ``speedup N.NN×``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
KEYS = ["dataset", "n_images", "strategy", "backbone", "seed"]


def grid_file(cells: list[Any], chunks: list[list[int]]) -> str:
    """A TOML grid file: one part per cell (its exact settings), one grid per chunk including its parts."""
    lines = []
    for i, c in enumerate(cells):
        lines += [
            f"[grids.cell-{i}]",
            f'description = "sampled cell {i}"',
            f"datasets = [{json.dumps(c.dataset)}]",
            f"sizes = [{c.n_images}]",
            f"strategies = [{json.dumps(c.strategy)}]",
            f"backbones = [{json.dumps(c.backbone or 'mobilenet_v2')}]",
            f"seeds = [{c.seed}]",
            f"image_size = {c.image_size}",
            f"epochs = {c.epochs}",
            f"trials = {c.trials}",
            f"max_test = {c.max_test}",
            f"retries = {c.retries}",
            "",
        ]
    for k, members in enumerate(chunks):
        lines += [f"[grids.chunk-{k}]", f'description = "chunk {k}"',
                  "include = [" + ", ".join(f'"cell-{i}"' for i in members) + "]", ""]  # fmt: skip
    return "\n".join(lines)


def split_chunks(cells: list[Any], k: int) -> list[list[int]]:
    """``k`` runs of consecutive cells, cut where the dataset changes, of about equal cell counts."""
    target = len(cells) / max(k, 1)
    chunks: list[list[int]] = [[]]
    for i, c in enumerate(cells):
        if chunks[-1] and len(chunks[-1]) >= target and c.dataset != cells[i - 1].dataset and len(chunks) < k:
            chunks.append([])
        chunks[-1].append(i)
    return chunks


class Side:
    """One revision's checkout, store and caches."""

    def __init__(self, name: str, root: Path, work: Path) -> None:
        self.name, self.root = name, root
        self.cache = work / f"cache-{name}"
        self.cache.mkdir(parents=True)
        self.store = f"sqlite:///{work / f'store-{name}.db'}"
        self.log = work / f"{name}.log"
        self.seconds = 0.0
        help_text = self._python("-m", "study.run", "--help", capture=True)
        self.extra = ["--no-report"] if "--no-report" in help_text else []

    def _python(self, *args: str, capture: bool = False) -> str:
        env = {**os.environ, "PYTHONPATH": str(self.root), "TRANSFER_STUDY_CACHE": str(self.cache)}
        if capture:
            return subprocess.run([sys.executable, *args], cwd=self.root, env=env, check=True, text=True,
                                  capture_output=True).stdout  # fmt: skip
        with self.log.open("a") as log:
            subprocess.run([sys.executable, *args], cwd=self.root, env=env, check=True, stdout=log, stderr=log)
        return ""

    def warm(self, datasets: list[tuple[str, int]]) -> float:
        """Decode the datasets into this side's decoded-image cache with its own loader."""
        code = (
            "import sys\nfrom study import config\n"
            "try:\n    from study.data.catalog import load\nexcept ImportError:\n    from study.data import load\n"
            f"for name, size in {datasets!r}:\n    load(name, size, config.data_dirs(), config.cache_dir())\n"
        )
        t0 = time.perf_counter()
        self._python("-c", code)
        return time.perf_counter() - t0

    def run(self, grid_path: Path, grid: str, workers: int) -> float:
        t0 = time.perf_counter()
        self._python("-m", "study.run", "--grid-file", str(grid_path), "--grid", grid, "--workers", str(workers),
                     "--store", self.store, "--cache-dir", str(self.cache), "--no-similarity", *self.extra)  # fmt: skip
        seconds = time.perf_counter() - t0
        self.seconds += seconds
        return seconds

    def results(self) -> Any:
        import pandas as pd
        import sqlalchemy as sa

        engine = sa.create_engine(self.store)
        frame = pd.read_sql("SELECT * FROM runs WHERE status = 'complete'", engine)
        engine.dispose()
        frame["cell_seconds"] = [_wall(m) for m in frame["metrics"]]
        return frame


def _wall(metrics: Any) -> float:
    m = json.loads(metrics) if isinstance(metrics, str) else metrics
    return float(m.get("wall_seconds", float("nan")))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_throughput", description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, help="git revision to compare with (e.g. 4c15272)")
    p.add_argument("--grid", default="quick")
    p.add_argument("--every", type=int, default=10, help="take every k-th cell of each strategy (default 10)")
    p.add_argument("--workers", type=int, default=2, help="local workers on both sides (default 2)")
    p.add_argument("--chunks", type=int, default=4, help="alternating runs per side (default 4)")
    p.add_argument("--datasets", help="only these datasets' cells (comma-separated; a whole dataset: --every 1)")
    p.add_argument("--keep", type=Path, help="keep both stores and logs in this folder")
    args = p.parse_args(argv)

    from bench.bench_workers import sample_cells

    cells = sample_cells(args.grid, args.every)
    if args.datasets:
        wanted = set(args.datasets.split(","))
        cells = [c for c in cells if c.dataset in wanted]
    chunks = split_chunks(cells, args.chunks)
    counts: dict[str, int] = defaultdict(int)
    for c in cells:
        counts[c.strategy] += 1
    print(f"{len(cells)} cells of grid {args.grid!r} (every {args.every}th per strategy), {len(chunks)} chunks: "
          + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    tree = work / "baseline-tree"
    try:
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.baseline], cwd=ROOT, check=True)
        grid_path = work / "sample.toml"
        grid_path.write_text(grid_file(cells, chunks))
        sides = [Side("baseline", tree, work), Side("current", ROOT, work)]
        datasets = sorted({(c.dataset, c.image_size) for c in cells})
        for side in sides:
            print(f"{side.name}: decoded-image cache warmed in {side.warm(datasets):.0f} s")
        for k in range(len(chunks)):
            order = sides if k % 2 == 0 else sides[::-1]
            for side in order:
                seconds = side.run(grid_path, f"chunk-{k}", args.workers)
                print(f"chunk {k} ({len(chunks[k])} cells) {side.name:8s} {seconds:7.1f} s")
        base, cur = (s.results() for s in sides)
        print(f"\nbaseline {args.baseline}: {sides[0].seconds:.1f} s wall, {len(base)} cells complete")
        print(f"current: {sides[1].seconds:.1f} s wall, {len(cur)} cells complete")
        merged = base.merge(cur, on=KEYS, suffixes=("_base", "_cur"))
        merged["diff"] = (merged["accuracy_cur"] - merged["accuracy_base"]).abs()
        print("\n| strategy | cells | baseline cell-s | current cell-s | ratio | mean acc base | mean acc cur "
              "| identical | largest acc diff |")
        print("|---|---|---|---|---|---|---|---|---|")
        for strategy, g in merged.groupby("strategy"):
            b, c = g["cell_seconds_base"].sum(), g["cell_seconds_cur"].sum()
            print(f"| {strategy} | {len(g)} | {b:.1f} | {c:.1f} | {b / c:.2f}× | {g.accuracy_base.mean():.4f} | "
                  f"{g.accuracy_cur.mean():.4f} | {int((g['diff'] == 0).sum())}/{len(g)} | {g['diff'].max():.4f} |")
        for side, frame in zip(sides, (base, cur), strict=True):
            small = frame[frame["train_seconds"] < 1.0]
            overhead = small["cell_seconds"] - small["train_seconds"] - small["extract_seconds"] - small["eval_seconds"]
            print(f"{side.name}: {len(small)} cells trained in < 1 s: mean wall {small['cell_seconds'].mean():.2f} s, "
                  f"of which fixed overhead (not training, extraction or evaluation) {overhead.mean():.2f} s")
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in work.glob("*.db"):
                shutil.copy(f, args.keep / f.name)
            for f in work.glob("*.log"):
                shutil.copy(f, args.keep / f.name)
            merged.drop(columns=[c for c in merged.columns if c.startswith(("metrics", "curves", "params",
                                                                             "provenance"))]).to_csv(
                args.keep / "cells.csv", index=False)  # fmt: skip
        print(f"speedup {sides[0].seconds / sides[1].seconds:.2f}×")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
