"""The sweep engine end to end, as a user runs it: ``python -m study.run`` in a subprocess on ../shared data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from study.engine.grid import expand, get_grid, load_grids
from study.engine.store import ResultsStore

REPO = Path(__file__).resolve().parents[1]


def study_run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "study.run", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env=os.environ.copy(),
    )  # fmt: skip


@pytest.fixture(scope="module")
def smoke(smoke_store):
    return smoke_store


def test_smoke_grid_fills_one_complete_row_per_cell(smoke):
    url, proc, tmp = smoke
    assert proc.returncode == 0, proc.stderr[-3000:]
    cells, _ = expand(get_grid("smoke"))
    frame = ResultsStore(url).to_frame()
    assert sorted(frame["cell_key"]) == sorted(c.key for c in cells)
    assert (frame["status"] == "complete").all()
    for col in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "majority_share", "train_seconds",
                "trainable_params", "total_params", "model_mb", "latency_ms"):  # fmt: skip
        assert frame[col].notna().all(), col
    row = frame[frame["strategy"] == "fine_tune_top"].iloc[0]
    assert {c["phase"] for c in row["curves"]} == {"head", "fine_tune"}
    assert row["provenance"]["tensorflow"] and row["provenance"]["weights_sha256"]
    assert len(row["metrics"]["correct"]) == row["metrics"]["n_test"]
    assert "finished in" in proc.stdout and "results:" in proc.stdout
    assert list((tmp / "logs").glob("sweep-*.log"))


def test_rerun_skips_finished_cells(smoke):
    url, _, tmp = smoke
    t0 = time.perf_counter()
    proc = study_run("--grid", "smoke", "--store", url, "--log-dir", str(tmp / "logs"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "0 complete" in proc.stdout and "8 already complete" in proc.stdout
    assert time.perf_counter() - t0 < 60
    assert len(ResultsStore(url).to_frame()) == 8


def test_export_round_trips_through_pandas(smoke, tmp_path):
    url, _, _ = smoke
    original = ResultsStore(url).to_frame()
    for fmt, reader in (("parquet", pd.read_parquet), ("csv", pd.read_csv)):
        out = tmp_path / fmt
        proc = subprocess.run(
            [sys.executable, "-m", "study.analysis.export", "--format", fmt, "--store", url, "--out", str(out)],
            cwd=REPO, capture_output=True, text=True,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        back = reader(out / f"runs.{fmt}")
        assert sorted(back["cell_key"]) == sorted(original["cell_key"])
        merged = back.set_index("cell_key").loc[original["cell_key"]]
        np.testing.assert_allclose(merged["accuracy"].to_numpy(), original["accuracy"].to_numpy())


def test_sigkill_mid_sweep_then_resume_gives_exactly_one_row_per_cell(tmp_path, datapack):
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    args = ["--grid", "smoke", "--datasets", "retinamnist", "--strategies", "feature_extraction,linear_probe",
            "--sizes", "30,40,50,60", "--store", url, "--log-dir", str(tmp_path), "--no-latency",
            "--no-similarity"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "study.run", *args], cwd=REPO, env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    store = None
    while time.time() < deadline:
        time.sleep(0.5)
        if (tmp_path / "kill.db").exists():
            store = store or ResultsStore(url)
            if store.status_counts().get("complete", 0) >= 2:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store is not None
    counts = store.status_counts()
    assert 2 <= counts.get("complete", 0) < 8, counts  # killed mid-way
    done = study_run(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    frame = ResultsStore(url).to_frame()
    assert len(frame) == 8 and frame["cell_key"].is_unique and (frame["status"] == "complete").all()
    assert (frame["attempts"] >= 1).all()


def _corrupt_folder(root: Path) -> None:
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")


def test_failing_cell_is_recorded_and_the_sweep_goes_on(tmp_path, datapack):
    """A cell that raises is stored as failed and the others run; a handful of unreadable images is only skipped."""
    _corrupt_folder(tmp_path / "mine")
    grid_file = tmp_path / "grids.toml"
    grid_file.write_text(
        '[datasets.mine]\npath = "mine"\ndomain = "medical"\n\n'
        "[grids.mixed]\n"
        'datasets = ["mine", "retinamnist"]\nsizes = [16]\nstrategies = ["linear_probe", "always_fails"]\n'
        'backbones = ["mobilenet_v2"]\nseeds = [0]\nimage_size = 32\nepochs = 2\nmax_test = 50\n'
    )
    url = f"sqlite:///{tmp_path / 'f.db'}"
    args = ["--grid", "mixed", "--grid-file", str(grid_file), "--store", url, "--log-dir", str(tmp_path),
            "--no-latency", "--plugin", "always_fails"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "plugins"), str(REPO)])}

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "study.run", *args, *extra], cwd=REPO, capture_output=True,
                              text=True, timeout=600, env=env)  # fmt: skip

    proc = run()
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "warning: dataset 'mine': 1 unreadable images skipped (a/broken.jpg)" in proc.stderr
    frame = ResultsStore(url).to_frame().set_index(["dataset", "strategy"])
    assert (frame.xs("linear_probe", level="strategy")["status"] == "complete").all()
    failed = frame.xs("always_fails", level="strategy")
    assert (failed["status"] == "failed").all() and failed["error"].str.contains("always_fails was asked").all()
    assert "failed mine[n=16]/always_fails" in proc.stdout
    again = run()  # failed cells are skipped unless asked, and the run says so
    assert "2 skipped" in again.stdout and "note: 2 cells failed in an earlier run" in again.stdout
    retry = run("--retry-failed")
    assert "2 failed" in retry.stdout
    assert (ResultsStore(url).to_frame().set_index("strategy").loc["always_fails", "attempts"] == 2).all()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--grid", "nope"], "unknown grid 'nope'; known grids:"),
        (["--grid", "smoke", "--datasets", "imagenet"], "unknown dataset 'imagenet'"),
        (["--grid", "smoke", "--strategies", "magic"], "unknown strategy 'magic'"),
        (["--grid", "smoke", "--backbones", "vgg19"], "unknown backbone 'vgg19'"),
        (["--grid", "smoke", "--datasets", "mnist@blur"], "unknown domain shift 'blur'"),
        (["--grid", "smoke", "--store", "postgresql://u@127.0.0.1:1/x"], "cannot open results store"),
    ],
)
def test_bad_input_fails_before_training_and_writes_nothing(tmp_path, args, message):
    proc = study_run(*args, "--log-dir", str(tmp_path / "logs"), timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "logs").exists()


def test_a_store_refuses_a_second_tuning_budget_before_training(smoke_store, tmp_path):
    url = smoke_store[0]
    before = len(ResultsStore(url).to_frame())
    proc = study_run("--grid", "smoke", "--trials", "3", "--store", url, "--log-dir", str(tmp_path / "logs"),
                     timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert "mix training budgets within one comparison" in proc.stderr and "--store" in proc.stderr, proc.stderr
    assert "trials_budget=1" in proc.stderr and "trials_budget=3" in proc.stderr
    assert len(ResultsStore(url).to_frame()) == before and not (tmp_path / "logs").exists()


def test_grids_are_data(tmp_path):
    grids = load_grids()
    assert {"smoke", "quick", "full"} <= set(grids)
    quick_cells, skipped = expand(grids["quick"])
    datasets = {c.dataset for c in quick_cells}
    assert {"cats_and_dogs_filtered", "cifar10_subset", "rsscn7_160", "chest_xray_pneumonia_224", "retinamnist",
            "mnist"} <= datasets  # fmt: skip
    assert any("@" in d for d in datasets)
    assert {c.seed for c in quick_cells} == {0, 1}
    assert any("exceeds the pool" in s.reason for s in skipped)
    bad = tmp_path / "g.toml"
    bad.write_text('[grids.x]\ndatasets = ["mnist"]\nsizes = [10]\n')
    with pytest.raises(Exception, match="lacks the axes"):
        load_grids(bad)


def test_dry_run_estimate_counts_the_deployment_of_a_deploy_cell():
    from dataclasses import replace

    from study.engine.sweep import DEPLOY_SECONDS, estimate_seconds

    cell = expand(get_grid("deploy"))[0][0]
    plain = replace(cell, deploy=False)
    assert estimate_seconds(cell) == pytest.approx(estimate_seconds(plain) + DEPLOY_SECONDS)
    history = {(cell.strategy, cell.backbone, cell.image_size): (3.0, 0.01)}
    assert estimate_seconds(cell, history) == pytest.approx(estimate_seconds(plain, history) + DEPLOY_SECONDS)
