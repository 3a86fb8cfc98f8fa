"""Re-run one committed reference cell per strategy with today's code and compare accuracies digit for digit.

    python -m bench.reproduce_reference [--workers 2] [--seed 0]

Why: a refactor that claims "behaviour unchanged" must reproduce the committed numbers exactly (same worker count,
so the same thread split and floating-point order). Per strategy it takes the reference quick-grid cell with the
smallest N (natural photos first, MobileNetV2 where a backbone applies), runs it through ``python -m study.run``
into a throwaway store and prints reference vs re-run accuracy. Not a test: it trains real models for minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference" / "runs.parquet"


def pick_cells(runs: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The cheapest quick-grid cell of each strategy (one seed), preferring natural photos and MobileNetV2."""
    quick = runs[(runs["grid"] == "quick") & (runs["seed"] == seed) & ~runs["dataset"].str.contains("@")]
    quick = quick.assign(
        _degenerate=quick["degenerate"].astype(bool),  # a collapsed model compares constants: last resort only
        _natural=quick["domain"] != "natural",
        _mnv2=~quick["backbone"].isin(["mobilenet_v2", "none"]),
    )
    order = ["_degenerate", "n_images", "_natural", "_mnv2", "dataset"]
    picked = quick.sort_values(order).groupby("strategy", sort=True).head(1)
    return picked.drop(columns=["_degenerate", "_natural", "_mnv2"])


def rerun(cell: pd.Series, workers: int, folder: Path) -> float:
    store = f"sqlite:///{folder / (cell['strategy'] + '.db')}"
    args = [sys.executable, "-m", "study.run", "--grid", "quick", "--datasets", cell["dataset"], "--sizes",
            str(int(cell["n_images"])), "--strategies", cell["strategy"], "--backbones",
            cell["backbone"] if cell["backbone"] != "none" else "mobilenet_v2", "--seeds", str(int(cell["seed"])),
            "--workers", str(workers), "--store", store, "--no-similarity", "--no-latency",
            "--log-dir", str(folder / "logs")]  # fmt: skip
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise SystemExit(f"re-run of {cell['cell_key']} failed: {proc.stderr.strip().splitlines()[-1:]}")
    from study.engine.store import ResultsStore

    with ResultsStore(store, create=False) as s:
        frame = s.to_frame(status="complete")
    return float(frame["accuracy"].iloc[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reproduce_reference", description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2, help="worker count of the reference run (default: 2)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cells = pick_cells(pd.read_parquet(REFERENCE), args.seed)
    same = 0
    print(f"{'cell':<75} {'reference':>10} {'re-run':>10}  seconds")
    with tempfile.TemporaryDirectory() as tmp:
        for _, cell in cells.iterrows():
            t0 = time.perf_counter()
            acc = rerun(cell, args.workers, Path(tmp))
            same += acc == float(cell["accuracy"])
            seconds = time.perf_counter() - t0
            print(f"{cell['cell_key']:<75} {float(cell['accuracy']):>10.6f} {acc:>10.6f}  {seconds:.0f}")
    print(f"identical: {same}/{len(cells)}")
    return 0 if same == len(cells) else 1


if __name__ == "__main__":
    sys.exit(main())
