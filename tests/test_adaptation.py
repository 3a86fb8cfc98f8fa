"""Domain adaptation (#20): the reversal layer, DANN on a known shift, no target test image in training, bad pairs."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from study.data.cell_data import check_pair
from study.engine.grid import Cell, expand, get_grid, load_grids
from study.engine.store import ResultsStore, make_cell_key
from study.errors import StudyError
from study.train import adaptation
from study.train.adaptation import Network, dann_lambda, dann_lr, feature_adapter, gradient_reversal, train

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("lam", [0.0, 0.37, 1.0, 2.5])
def test_the_reversal_layer_is_identity_forward_and_exactly_minus_lambda_backward(lam):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(5, 7)).astype("float32"))
    upstream = rng.normal(size=(5, 7)).astype("float32")
    layer = gradient_reversal(lam)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * upstream)  # d loss / d y = upstream
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_array_equal(tape.gradient(loss, x).numpy(), -np.float32(lam) * upstream)


def test_the_paper_schedules():
    assert dann_lambda(0.0) == 0.0 and dann_lambda(1.0) == pytest.approx(2 / (1 + np.exp(-10)) - 1)
    assert dann_lr(0.0) == 0.01 and dann_lr(1.0) == pytest.approx(0.01 / 11**0.75)
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + np.exp(-5)) - 1)


def _domains(seed: int, n: int = 300) -> tuple[np.ndarray, ...]:
    """Two domains with a known shift: 3 classes; dims 0-1 carry the class in both (noisy), dims 2-3 carry it cleanly
    in the source but are translated by (3, -3) in the target, so a source-only classifier leans on features that move.
    """
    rng = np.random.default_rng(seed)
    signal = np.array([[0, 2], [2, -1], [-2, -1]], float)
    nuisance = np.array([[0, 1.5], [1.5, -1], [-1.5, -1]], float)

    def draw(m: int, target: bool) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, m)
        moved = np.array([3.0, -3.0]) if target else 0.0
        x = np.hstack([signal[y] + rng.normal(0, 0.9, (m, 2)), nuisance[y] + rng.normal(0, 0.3, (m, 2)) + moved])
        return x.astype("float32"), y

    xs, ys = draw(n, False)
    xs_val, ys_val = draw(100, False)
    xt, _ = draw(n, True)  # unlabelled target
    xt_test, yt_test = draw(300, True)
    return xs, ys, xs_val, ys_val, xt, xt_test, yt_test


def test_dann_beats_source_only_on_a_constructed_shift():
    import keras

    gains = []
    for seed in (0, 1, 2):
        xs, ys, xs_val, ys_val, xt, xt_test, yt_test = _domains(seed)
        acc = {}
        for adversarial in (False, True):
            keras.utils.set_random_seed(seed)
            net = Network.build(feature_adapter(4, 32), 3)
            train(net, xs, ys, xs_val, ys_val, steps=200, seed=seed, target_x=xt if adversarial else None)
            acc[adversarial] = float(np.mean(net.proba(xt_test).argmax(axis=1) == yt_test))
        gains.append(acc[True] - acc[False])
    # measured (200 steps): source-only 0.76 / 0.68 / 0.40, DANN 0.98 / 0.88 / 0.63
    assert min(gains) > 0.1, gains


def test_training_runs_a_fixed_number_of_steps_and_early_stopping_keeps_the_best_checkpoint():
    """A pair recipe trains for a step budget (not epochs over a small set) and, with patience (source_then_target's
    fine-tuning), stops once the selection accuracy stalls, restoring the best checkpoint."""
    import keras

    xs, ys, xs_val, ys_val, *_ = _domains(0, n=64)
    keras.utils.set_random_seed(0)
    net = Network.build(feature_adapter(4, 16), 3)
    curves = train(net, xs, ys, xs_val, ys_val, steps=300, seed=0)
    assert curves[-1]["step"] == 300 and len(curves) == adaptation.EVALS  # 64 images: 2 batches/pass, 150 passes
    keras.utils.set_random_seed(0)
    net = Network.build(feature_adapter(4, 16), 3)
    noise = np.random.default_rng(1).integers(0, 3, len(ys_val))  # selection labels no model can track
    curves = train(net, xs, ys, xs_val, noise, steps=400, seed=0, patience=2)
    assert len(curves) < adaptation.EVALS and curves[-1]["step"] < 400
    (best,) = [c for c in curves if c["best"]]
    assert best["val_accuracy"] == max(c["val_accuracy"] for c in curves)
    assert float(np.mean(net.proba(xs_val).argmax(axis=1) == noise)) == pytest.approx(best["val_accuracy"])


# ---------------------------------------------------------------------------------------------- pairs and cells


def test_ordinary_cell_keys_are_unchanged_and_pair_cells_are_distinct():
    base = dict(dataset="mnist", n_images=50, strategy="linear_probe", backbone="mobilenet_v2", image_size=64, seed=0,
                epochs=10, trials=1, augment=False, max_test=500, grid="g")  # fmt: skip
    assert Cell(**base).key == "mnist[n=50]/linear_probe/mobilenet_v2/s64/e=10/t=1/seed=0"
    pair = Cell(**{**base, "dataset": "mnist_m", "strategy": "dann"}, source="mnist", n_target_labels=0)
    assert pair.key == "mnist_m[n=50]/dann/mobilenet_v2/s64/e=10/t=1/src=mnist/nt=0/seed=0"
    assert replace(pair, n_target_labels=50).key != pair.key


@pytest.mark.parametrize(
    ("source", "target", "message"),
    [
        ("mnist", "gtsrb", "different class sets"),
        ("pacs_photo", "office31_webcam", "different class sets"),
        ("mnist", "no_such_set", "no_such_set"),
        ("mnist", "mnist", "the same dataset"),
    ],
)
def test_bad_pairs_are_one_line_errors(source, target, message):
    with pytest.raises(StudyError) as err:
        check_pair(source, target)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_good_pairs_pass():
    for source, target in (("mnist", "mnist_m"), ("synsigns", "gtsrb"), ("pacs_photo", "pacs_sketch"),
                           ("office31_amazon", "office31_webcam"),
                           ("cats_and_dogs_filtered", "cats_and_dogs_filtered@shuffle8")):  # fmt: skip
        check_pair(source, target)


PAIR_GRID = """[grids.g]
pairs = {pairs}
sizes = [100]
n_target_labels = [0, 50]
strategies = ["source_only", "dann", "target_only", "source_then_target_cnn"]
backbones = ["mobilenet_v2"]
seeds = [0]
image_size = 32
"""


def test_a_pair_grid_expands_with_reasons_for_what_it_skips(tmp_path):
    path = tmp_path / "grids.toml"
    path.write_text(PAIR_GRID.format(pairs='[["mnist", "mnist_m"], ["synsigns", "gtsrb"]]'))
    cells, skipped = expand(load_grids(path)["g"])
    keys = {c.key for c in cells}
    assert "mnist_m[n=100]/dann/mobilenet_v2/s32/e=10/t=1/src=mnist/nt=50/seed=0" in keys
    assert "mnist_m[n=100]/source_then_target_cnn/none/s32/e=10/t=1/src=mnist/nt=50/seed=0" in keys
    assert all(c.source is not None for c in cells)
    reasons = {s.cell.key: s.reason for s in skipped}
    assert "target_only needs labelled target images" in reasons[
        "mnist_m[n=100]/target_only/mobilenet_v2/s32/e=10/t=1/src=mnist/nt=0/seed=0"]
    assert "below 2 per class for gtsrb's 43 classes" in reasons[
        "gtsrb[n=100]/dann/mobilenet_v2/s32/e=10/t=1/src=synsigns/nt=50/seed=0"]


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ('[["mnist", "gtsrb"]]', "different class sets"),
        ('[["mnist", "nope"]]', "nope"),
        ('[["mnist"]]', "must be [source, target]"),
    ],
)
def test_a_grid_with_a_bad_pair_stops_in_one_line(tmp_path, pairs, message):
    path = tmp_path / "grids.toml"
    path.write_text(PAIR_GRID.format(pairs=pairs))
    with pytest.raises(StudyError) as err:
        expand(get_grid("g", path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_pair_strategies_need_pairs_and_pairs_need_pair_strategies(tmp_path):
    path = tmp_path / "grids.toml"
    path.write_text(PAIR_GRID.format(pairs='[["mnist", "mnist_m"]]').replace('"source_only"', '"linear_probe"'))
    with pytest.raises(StudyError, match="train on one dataset"):
        expand(get_grid("g", path))
    path.write_text('[grids.g]\ndatasets = ["mnist"]\nsizes = [50]\nstrategies = ["dann"]\n'
                    'backbones = ["mobilenet_v2"]\nseeds = [0]\n')  # fmt: skip
    with pytest.raises(StudyError, match="need a \\(source, target\\) pair"):
        expand(get_grid("g", path))


def test_the_command_line_refuses_a_bad_pair_with_exit_2(tmp_path):
    path = tmp_path / "grids.toml"
    path.write_text(PAIR_GRID.format(pairs='[["mnist", "gtsrb"]]'))
    proc = subprocess.run([sys.executable, "-m", "study.run", "--grid-file", str(path), "--grid", "g", "--store",
                           f"sqlite:///{tmp_path / 's.db'}"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "different class sets" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s.db").exists()


def test_the_domain_adaptation_grid_expands():
    cells, _ = expand(get_grid("domain_adaptation"))
    pairs = {(c.source, c.dataset) for c in cells}
    assert ("mnist", "mnist_m") in pairs and ("cats_and_dogs_filtered", "cats_and_dogs_filtered@shuffle8") in pairs
    assert {c.n_target_labels for c in cells} == {0, 50, 100}  # 100 where 50 is below 2 per class


def test_an_older_store_gains_the_pair_columns(tmp_path):
    import sqlite3

    url = f"sqlite:///{tmp_path / 'old.db'}"
    ResultsStore(url).close()
    con = sqlite3.connect(tmp_path / "old.db")
    for column in ("source", "n_target_labels"):
        con.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    con.commit()
    con.close()
    store = ResultsStore(url, create=False)
    cell = dict(dataset="toy", n_images=10, strategy="dann", backbone="b", image_size=32, seed=0, source="src",
                n_target_labels=5)  # fmt: skip
    assert store.claim(cell)
    assert store.to_frame().iloc[0]["source"] == "src" and make_cell_key(cell).endswith("/src=src/nt=5/seed=0")


# ------------------------------------------------------------------------------------------------ no leakage


@pytest.fixture(scope="module")
def runner(tmp_path_factory, datapack):
    from study.config import WeightsDirs, data_dirs, keras_home
    from study.engine.cell import CellRunner

    tmp = tmp_path_factory.mktemp("adaptation")
    return CellRunner(tmp / "cache", data_dirs(), WeightsDirs(keras_home(), tmp / "cache"), measure_latency=False)


def test_no_target_test_image_or_label_reaches_training(runner, monkeypatch):
    """Poisoned target test split (marker images, shuffled labels): training never sees it, selection is unmoved."""
    cell = Cell(dataset="mnist_m", source="mnist", n_target_labels=20, n_images=60, strategy="dann_cnn",
                backbone=None, image_size=32, seed=0, epochs=1, trials=1, augment=False, max_test=100, grid="test",
                retries=0)  # fmt: skip
    data = runner.cell_data(cell)
    taken = np.concatenate([data.train_idx, data.val_idx])
    assert len(np.intersect1d(taken, data.unlabelled_idx)) == 0 and len(data.unlabelled_idx) == 60
    assert data.unlabelled_idx.max() < len(data.pool.labels) and len(data.train_idx) + len(data.val_idx) == 20

    seen: list[np.ndarray] = []
    real_train = adaptation.train

    def spy(net, x, y, select_x, select_y, **kw):
        seen.extend([x, select_x] + ([kw["target_x"]] if kw.get("target_x") is not None else []))
        return real_train(net, x, y, select_x, select_y, **kw)

    monkeypatch.setattr(adaptation, "train", spy)
    clean = runner.run(cell)
    target = runner.dataset("mnist_m", 32)
    marker = np.full_like(target.test.images, 7)
    poisoned_test = replace(target.test, images=marker, labels=np.random.default_rng(1).permutation(target.test.labels))
    runner._datasets[("mnist_m", 32)] = replace(target, test=poisoned_test)
    seen.clear()
    poisoned = runner.run(cell)
    assert seen and not any((arr.reshape(len(arr), -1) == 7).all(axis=1).any() for arr in seen)
    assert poisoned["metrics"]["val_accuracy"] == pytest.approx(clean["metrics"]["val_accuracy"], abs=1e-6)
    assert poisoned["metrics"]["adaptation"]["n_target_unlabelled"] == 60
