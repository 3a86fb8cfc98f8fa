"""The committed reference study is reproducible: re-running one of its cells gives its accuracy again.

The cell is the cheapest one the tables hold (linear probe on frozen MobileNetV2 features, natural photos, the
smallest training-set size); it is re-run with the command documented in ``results/reference/README.md``
(``study.run`` with the reference grid and its axes narrowed to the cell, 2 workers as in the reference run), every
seed, into a fresh store. The re-run's mean accuracy must fall inside the cell's reported 95 % interval.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from advisor.data import load_results
from study.analysis import stats
from study.engine.store import ResultsStore

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference"


@pytest.fixture(scope="module")
def reference_runs() -> pd.DataFrame:
    path = REFERENCE / "runs.parquet"
    if not path.exists():
        pytest.fail(f"{path} is missing: the reference study must be committed")
    return load_results(REFERENCE)[0]  # complete rows, JSON columns decoded and flattened (as the advisor reads them)


def test_reference_readme_documents_the_rerun_command() -> None:
    text = (REFERENCE / "README.md").read_text()
    assert "python -m study.run --grid broad-large --datasets" in text


def test_one_reference_cell_reproduces_within_its_interval(reference_runs: pd.DataFrame, tmp_path: Path) -> None:
    runs = reference_runs[~reference_runs["degenerate"].astype(bool)]
    pick = runs[(runs["strategy"] == "linear_probe") & (runs["backbone"] == "mobilenet_v2")
                & (runs["domain"] == "natural") & ~runs["dataset"].str.contains("@")]  # fmt: skip
    assert not pick.empty, "the reference tables lack a natural-photo linear-probe cell"
    cell = pick.sort_values(["n_images", "dataset"]).iloc[0]
    rows = runs[(runs[list(stats.CELL_KEYS)] == cell[list(stats.CELL_KEYS)]).all(axis=1)]
    seeds = sorted(int(s) for s in rows["seed"])
    summary = stats.summarise(rows)
    assert summary.iloc[0]["ci_method"] == "seeds+examples"
    interval = summary.iloc[0]
    store = f"sqlite:///{tmp_path / 'rerun.db'}"
    args = [
        sys.executable, "-m", "study.run", "--grid", str(cell["grid"]), "--datasets", str(cell["dataset"]),
        "--sizes", str(int(cell["n_images"])), "--strategies", "linear_probe", "--backbones", "mobilenet_v2",
        "--seeds", ",".join(map(str, seeds)), "--workers", "2", "--image-size", str(int(cell["image_size"])),
        "--epochs", str(int(cell["epochs_budget"])), "--trials", str(int(cell["trials_budget"])),
        "--store", store, "--no-similarity", "--no-latency", "--log-dir", str(tmp_path / "logs"),
    ]  # fmt: skip
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    rerun = ResultsStore(store).to_frame(status="complete")
    assert sorted(rerun["seed"]) == seeds
    mean = float(rerun["accuracy"].mean())
    lo, hi = float(interval["accuracy_ci_low"]), float(interval["accuracy_ci_high"])
    assert lo <= mean <= hi, (
        f"{cell['dataset']} n={cell['n_images']} linear_probe: re-run mean {mean:.4f} outside the reference "
        f"interval [{lo:.4f}, {hi:.4f}] (reference mean {float(interval['accuracy_mean']):.4f})"
    )
