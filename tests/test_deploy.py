"""From advice to a deployable model: ``advisor train`` / ``advisor predict``, the serialisable preprocessing layer,
the TFLite exports and the sweep's ``deploy`` metrics (``study.train.deploy``).

One real ``advisor train`` run (feature extraction, MobileNetV2, 64 px, 20 training + 40 test images per class of
cats_and_dogs_filtered) is shared by the module. Tolerances, stated once:

- a reloaded ``model.keras`` matches the model in memory to 1e-6 (same graph, same weights);
- the exported model on raw images matches the study's own predictions (cached features -> head) to 1e-4;
- TFLite float32 matches Keras to 1e-3 per probability;
- TFLite int8 test accuracy is within 5 points of float32, and int8 and float32 pick the same class on >= 90 %
  of the test images.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_advisor as run_cli

IMAGE_SIZE = 64
TRAIN_PER_CLASS = 20
TEST_PER_CLASS = 40
INT8_ACCURACY_TOLERANCE = 0.05
INT8_MIN_AGREEMENT = 0.90
FILES = {"model.keras", "model_float32.tflite", "model_float16.tflite", "model_int8.tflite", "labels.json",
         "metrics.json", "advisor-model.json"}  # fmt: skip


def cats_and_dogs_folder(datapack: Path, root: Path, train_per_class: int = TRAIN_PER_CLASS) -> Path:
    """A user's folder with an official split: train/ and test/, each with cats/ and dogs/ (copied, not linked)."""
    source = datapack / "cats_and_dogs_filtered"
    for part, src, n in (("train", "train", train_per_class), ("test", "validation", TEST_PER_CLASS)):
        for cls in ("cats", "dogs"):
            (root / part / cls).mkdir(parents=True)
            for f in sorted((source / src / cls).iterdir())[:n]:
                shutil.copy(f, root / part / cls / f.name)
    return root




@pytest.fixture(scope="module")
def trained(tmp_path_factory, datapack, keras_cache):
    """``advisor train`` through the CLI, with the outcome (model in memory, the cell's data) kept by a spy."""
    import advisor.deploy as deploy

    tmp = tmp_path_factory.mktemp("deploy")
    folder = cats_and_dogs_folder(datapack, tmp / "pets")
    out = tmp / "exported" / "model"
    seen = {}
    real = deploy.train

    def spy(*args, **kwargs):
        seen["outcome"] = real(*args, **kwargs)
        return seen["outcome"]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(deploy, "train", spy)
        code, stdout, stderr = run_cli("train", "--data-dir", str(folder), "--strategy", "feature_extraction",
                                       "--backbone", "mobilenet_v2", "--trials", "1", "--image-size", str(IMAGE_SIZE),
                                       "--out", str(out), "--no-gap")  # fmt: skip
    assert code == 0, stderr[-3000:]
    return {"out": out, "folder": folder, "stdout": stdout, "outcome": seen["outcome"]}


def _test_images(outcome) -> tuple[np.ndarray, np.ndarray]:
    data = outcome.trained.data
    return data.test.images[data.test_idx].astype(np.float32), data.y_test


# ------------------------------------------------------------------------------------------------- advisor train


def test_train_writes_a_complete_folder(trained):
    out = trained["out"]
    assert {p.name for p in out.iterdir()} == FILES
    assert [p.name for p in out.parent.iterdir()] == ["model"]  # no temporary folder left beside it
    labels = json.loads((out / "labels.json").read_text())
    assert labels["class_names"] == ["cats", "dogs"] and labels["image_size"] == IMAGE_SIZE
    assert (labels["backbone"], labels["strategy"], labels["preprocessing"]) == ("mobilenet_v2", "feature_extraction",
                                                                                "tf")  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    outcome = trained["outcome"]
    _, y = _test_images(outcome)
    assert metrics["test"]["n_test"] == len(y) == 2 * TEST_PER_CLASS  # the folder's own test/ split, all of it
    accuracy = float(np.mean(outcome.trained.result.test_proba.argmax(axis=1) == y))
    assert metrics["test"]["accuracy"] == pytest.approx(accuracy)
    assert metrics["test"]["accuracy"] > 0.6  # a real model, so the int8 comparison below means something
    assert metrics["split"]["n_train"] + metrics["split"]["n_val"] == 2 * TRAIN_PER_CLASS
    used = metrics["recommendation"]["used"]
    assert (used["strategy"], used["backbone"]) == ("feature_extraction", "mobilenet_v2")
    assert metrics["recommendation"]["overrides"]["strategy"] == "feature_extraction"
    assert metrics["traits"]["n_classes"] == 2 and metrics["traits"]["n_images"] == 2 * TRAIN_PER_CLASS
    assert metrics["traits"]["gap"] is None  # --no-gap (the gap itself: tests/test_advisor.py)
    assert metrics["params"]["lr_head"] > 0
    for key in ("keras", "tflite_float32", "tflite_float16", "tflite_int8"):
        assert key in trained["stdout"]
        assert metrics["variants"][key]["mb"] > 0 and metrics["variants"][key]["latency_ms"] > 0


def test_saved_model_reloads_with_the_same_predictions(trained):
    import keras

    from study.zoo.preprocessing import Preprocess

    outcome = trained["outcome"]
    x, _ = _test_images(outcome)
    in_memory = outcome.trained.result.model().predict(x, verbose=0)
    reloaded = keras.saving.load_model(trained["out"] / "model.keras")  # safe_mode: a Lambda would be refused
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), in_memory, rtol=0, atol=1e-6)
    layers = {type(layer).__name__: layer for layer in reloaded.layers}
    assert "Lambda" not in layers and isinstance(layers["Preprocess"], Preprocess)
    assert layers["Preprocess"].mode == "tf"


def test_exported_model_preprocesses_like_training(trained):
    """The exported model on raw images gives what the study computed (preprocessing -> cached features -> head)."""
    import keras

    outcome = trained["outcome"]
    x, _ = _test_images(outcome)
    reloaded = keras.saving.load_model(trained["out"] / "model.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), outcome.trained.result.test_proba, rtol=0, atol=1e-4)
    assert outcome.metrics["study_vs_export_max_abs_diff"] < 1e-4


def test_tflite_variants(trained):
    import keras

    from study.train.deploy import tflite_interpreter, tflite_predict

    out = trained["out"]
    x, y = _test_images(trained["outcome"])
    reference = keras.saving.load_model(out / "model.keras").predict(x, verbose=0)
    proba = {
        v: tflite_predict(tflite_interpreter(out / f"model_{v}.tflite"), x) for v in ("float32", "float16", "int8")
    }
    acc = {v: float(np.mean(p.argmax(axis=1) == y)) for v, p in proba.items()}
    np.testing.assert_allclose(proba["float32"], reference, rtol=0, atol=1e-3)
    assert abs(acc["int8"] - acc["float32"]) <= INT8_ACCURACY_TOLERANCE, acc
    agreement = float(np.mean(proba["int8"].argmax(axis=1) == proba["float32"].argmax(axis=1)))
    assert agreement >= INT8_MIN_AGREEMENT, agreement
    # metrics.json reports what these files do
    variants = json.loads((out / "metrics.json").read_text())["variants"]
    for v in proba:
        assert variants[f"tflite_{v}"]["accuracy"] == pytest.approx(acc[v])
        assert variants[f"tflite_{v}"]["mb"] == pytest.approx((out / f"model_{v}.tflite").stat().st_size / 1e6)
    assert variants["int8_accuracy_delta"] == pytest.approx(acc["int8"] - acc["float32"])
    sizes = {v: (out / f"model_{v}.tflite").stat().st_size for v in proba}
    assert sizes["int8"] < 0.4 * sizes["float32"] and sizes["float16"] < 0.6 * sizes["float32"]
    # int8 inside, float32 at the edges (as documented in study.train.deploy)
    interpreter = tflite_interpreter(out / "model_int8.tflite")
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    assert sum(t["dtype"] == np.int8 for t in interpreter.get_tensor_details()) > 50


# ------------------------------------------------------------------------------------------------ advisor predict


def _confident_training_images(trained) -> dict[str, tuple[Path, np.ndarray]]:
    """Per class, the training image the in-memory model is surest of (and right about), with its probabilities."""
    outcome = trained["outcome"]
    data = outcome.trained.data
    proba = outcome.trained.result.model().predict(data.pool.images[data.train_idx].astype(np.float32), verbose=0)
    chosen = {}
    for k, cls in enumerate(data.class_names):
        rows = np.flatnonzero((data.y_train == k) & (proba.argmax(axis=1) == k))
        assert rows.size, f"the model gets no training image of {cls} right"
        best = rows[np.argmax(proba[rows, k])]
        chosen[cls] = (trained["folder"] / data.pool.ids[data.train_idx[best]], proba[best])
    return chosen


def test_predict_prints_the_class_of_each_training_image(trained):
    chosen = _confident_training_images(trained)
    paths = [str(p) for p, _ in chosen.values()]
    code, out, err = run_cli("predict", "--model", str(trained["out"]), *paths)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == len(chosen)
    for line, (cls, (path, proba)) in zip(lines, chosen.items(), strict=True):
        assert line.startswith(f"{path}: {cls} ")
        # decoded and resized exactly as in training: the same probability as on the study's decoded array
        assert float(line.rsplit(" ", 1)[1]) == pytest.approx(proba.max(), abs=6e-4)
    code, out, err = run_cli("predict", "--model", str(trained["out"]), "--tflite", "int8", "--json", *paths)
    assert code == 0, err
    rows = json.loads(out)
    assert [r["class"] for r in rows] == list(chosen)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 0.02 for r in rows)


def test_predict_errors_are_one_line(trained, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    cases = [
        (["--model", str(tmp_path), str(text)], "has no labels.json"),
        (["--model", str(trained["out"]), str(tmp_path / "missing.jpg")], "does not exist"),
        (["--model", str(trained["out"]), str(text)], "cannot read image"),
    ]
    for argv, message in cases:
        code, _, err = run_cli("predict", *argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


# --------------------------------------------------------------------------------------------------- bad inputs


def _png_folder(root: Path, classes: dict[str, int]) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, n in classes.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def test_train_without_a_choice_trains_the_probe_advisors_first_option(tmp_path, datapack, keras_cache,
                                                                       monkeypatch):  # fmt: skip
    """With results that carry the study's cell probes (the committed reference), ``advisor train`` probes the
    folder it has registered itself and trains the probe advisor's first option (a regression: the probing
    re-registered the folder and failed with "already registered"). Training itself is tested above: stopped here."""
    from study.engine.cell import CellRunner
    from study.errors import StudyError

    folder = cats_and_dogs_folder(datapack, tmp_path / "pets", train_per_class=30)  # 60: a size the study measured
    seen = {}

    def stop(self, cell):
        seen["cell"] = cell
        raise StudyError("stopped before training")

    monkeypatch.setattr(CellRunner, "train", stop)
    out = tmp_path / "model"
    code, _, err = run_cli("train", "--data-dir", str(folder), "--image-size", str(IMAGE_SIZE), "--out", str(out),
                           "--no-gap")  # fmt: skip
    assert code == 2 and err.strip().endswith("error: stopped before training"), err[-2000:]
    ranked = next(line for line in err.splitlines() if line.startswith("the probe-based advisor ranks"))
    cell = seen["cell"]
    assert f"ranks {cell.strategy} / {cell.backbone} first" in ranked
    assert not out.exists()


def test_bad_train_inputs_are_one_line_errors_and_write_nothing(tmp_path, datapack):
    empty = tmp_path / "empty"
    empty.mkdir()
    text = tmp_path / "text"
    (text / "a").mkdir(parents=True)
    (text / "a" / "notes.md").write_text("hello")  # no image; class folders of .txt files are a text dataset
    one_class = _png_folder(tmp_path / "one", {"only": 6})
    good = _png_folder(tmp_path / "two", {"a": 6, "b": 6})
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    out = tmp_path / "out" / "model"
    cases = [
        ([str(tmp_path / "nope")], out, "does not exist"),
        ([str(empty)], out, "is empty"),
        ([str(text)], out, "holds no images"),
        ([str(one_class)], out, "has only one class"),
        ([str(good), "--strategy", "magic"], out, "unknown strategy 'magic'"),
        ([str(good), "--backbone", "alexnet"], out, "unknown backbone 'alexnet'"),
        ([str(good)], taken, "exists and is not empty; pass --force"),
        ([str(good), "--trials", "0"], out, "--trials must be an integer of at least 1"),
    ]
    for data_dir, target, message in cases:
        code, stdout, err = run_cli("train", "--data-dir", *data_dir, "--out", str(target))
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (message, err)
        assert not (tmp_path / "out").exists()
        assert [p.name for p in taken.iterdir()] == ["keep.txt"]


def test_force_replaces_the_folder_only_when_complete(tmp_path):
    from advisor.deploy import _replace_folder

    out, tmp = tmp_path / "model", tmp_path / ".model.tmp-1"
    out.mkdir()
    for name in ("labels.json", "metrics.json", "advisor-model.json", "model.keras"):  # a folder advisor train wrote
        (out / name).write_text("old")
    tmp.mkdir()
    (tmp / "labels.json").write_text("{}")
    _replace_folder(tmp, out)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert [p.name for p in out.iterdir()] == ["labels.json"]


# ------------------------------------------------------------------------------------------------ preprocessing


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe", "none"])
def test_preprocess_layer_equals_keras_applications(mode, tmp_path):
    import keras
    from keras.applications import imagenet_utils

    from study.zoo.preprocessing import Preprocess

    x = np.random.default_rng(1).uniform(0, 255, (3, 9, 7, 3)).astype(np.float32)
    expected = x.copy() if mode == "none" else imagenet_utils.preprocess_input(x.copy(), mode=mode)
    got = np.asarray(Preprocess(mode)(x))
    np.testing.assert_array_equal(got, expected)  # the same float32 operations as Keras: bit for bit
    # and through a .keras file, in a model
    inp = keras.Input((9, 7, 3))
    model = keras.Model(inp, Preprocess(mode, name="preprocess")(inp))
    model.save(tmp_path / "p.keras")
    again = keras.saving.load_model(tmp_path / "p.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))


def test_every_backbone_preprocesses_as_its_keras_module():
    import keras

    from study.errors import StudyError
    from study.zoo.backbones import BACKBONES, preprocess_fn
    from study.zoo.preprocessing import Preprocess

    x = np.random.default_rng(2).uniform(0, 255, (2, 5, 5, 3)).astype(np.float32)
    for spec in BACKBONES.records():
        if spec.preprocess:
            expected = getattr(keras.applications, spec.preprocess).preprocess_input(x.copy())
        else:  # no Keras module: EfficientNet-Lite's (x - 127) / 128 (TF efficientnet_lite_builder)
            assert spec.preprocessing == "lite", spec.name
            expected = (x - np.float32(127)) / np.float32(128)
        np.testing.assert_array_equal(np.asarray(preprocess_fn(spec)(x)), expected, err_msg=spec.name)
        np.testing.assert_array_equal(np.asarray(Preprocess(spec.preprocessing)(x)), np.asarray(preprocess_fn(spec)(x)))
    with pytest.raises(StudyError, match="unknown preprocessing mode"):
        Preprocess("bgr")


def test_saved_models_carry_no_training_state(tmp_path):
    """A trained (compiled) model, or a deployable wrapping one as the scratch strategies build, saves its weights
    only: no optimizer slots (Adam would triple the file), same predictions."""
    import keras

    from study.train.deploy import inference_model
    from study.train.strategies import _with_preprocessing, small_cnn
    from study.train.training import TrainConfig
    from study.zoo.backbones import get_backbone

    x = np.random.default_rng(3).uniform(0, 255, (8, 32, 32, 3)).astype(np.float32)
    trained = small_cnn(32, 2, TrainConfig())
    trained.compile("adam", "sparse_categorical_crossentropy")
    trained.fit(x, np.array([0, 1] * 4), epochs=1, verbose=0)
    for name, model in (
        ("plain", trained),
        ("wrapped", _with_preprocessing(trained, get_backbone("mobilenet_v2"), 32)),
    ):
        weights = sum(w.numpy().nbytes for w in model.weights)
        clean = inference_model(model)
        clean.save(tmp_path / f"{name}.keras")
        assert (tmp_path / f"{name}.keras").stat().st_size < 1.2 * weights + 100_000
        np.testing.assert_array_equal(
            keras.saving.load_model(tmp_path / f"{name}.keras").predict(x, verbose=0), model.predict(x, verbose=0)
        )
    model.save(tmp_path / "with_optimizer.keras")  # what inference_model avoids
    assert (tmp_path / "with_optimizer.keras").stat().st_size > 2.5 * weights


# -------------------------------------------------------------------------------------------- the sweep's deploy


def test_grid_cell_with_deploy_records_deployment_metrics(tmp_path, datapack, keras_cache):
    from dataclasses import replace

    from reports.build import build_report, deployment_frame, deployment_section
    from study import config
    from study.engine.cell import CellRunner
    from study.engine.grid import Cell, expand, get_grid
    from study.engine.store import ResultsStore

    grid = get_grid("deploy")
    assert grid.deploy and all(c.deploy for c in expand(grid)[0])
    cell = Cell(dataset="retinamnist", n_images=40, strategy="linear_probe", backbone="mobilenet_075", image_size=32,
                seed=0, epochs=2, trials=1, augment=False, max_test=60, grid="test", retries=0, deploy=True)
    assert cell.key == replace(cell, deploy=False).key  # not part of the key
    row = CellRunner(config.cache_dir(), config.data_dirs(), config.weights_dirs()).run(cell)
    deploy = row["metrics"]["deploy"]
    for key in ("keras", "tflite_float32", "tflite_float16", "tflite_int8"):
        assert deploy[key]["mb"] > 0 and deploy[key]["latency_ms"] > 0 and 0 <= deploy[key]["accuracy"] <= 1
    assert deploy["tflite_int8"]["mb"] < deploy["tflite_float32"]["mb"]
    assert deploy["int8_accuracy_delta"] == pytest.approx(
        deploy["tflite_int8"]["accuracy"] - deploy["tflite_float32"]["accuracy"]
    )
    assert deploy["keras"]["accuracy"] == pytest.approx(row["accuracy"], abs=1 / 60 + 1e-9)
    assert deploy["keras_reload_max_abs_diff"] < 1e-6 and deploy["n_test"] == 60
    assert deploy["seconds"] > 0  # the deployment step's own wall time (dry-run budgets it apart)

    store = ResultsStore(f"sqlite:///{tmp_path / 'study.db'}")
    assert store.claim({**cell.store_fields(), "cell_key": cell.key})
    assert store.complete(cell.key, row)
    runs = store.to_frame(status="complete")
    assert runs.iloc[0]["metrics"]["deploy"]["tflite_int8"]["mb"] == pytest.approx(deploy["tflite_int8"]["mb"])
    frame = deployment_frame(runs)
    assert len(frame) == 1 and frame.iloc[0]["strategy"] == "linear_probe"
    assert frame.iloc[0]["int8 MB"] == pytest.approx(deploy["tflite_int8"]["mb"])
    assert frame.iloc[0]["int8 Δ accuracy (points)"] == pytest.approx(100 * deploy["int8_accuracy_delta"])
    assert deployment_section(runs)["table"]["rows"][0]["key"] == "mobilenet_075|linear_probe|32"
    no_deploy = runs.assign(metrics=[{"n_test": 60}])
    assert deployment_frame(no_deploy).empty and deployment_section(no_deploy)["table"] is None

    # the report's cost section shows the table (and a note when no row has deployment figures)
    html = build_report(store, out=tmp_path / "report" / "report.html").read_text()
    section = html[html.index('<section id="cost"') : html.index("</section>", html.index('<section id="cost"'))]
    assert (
        '<table class="sortable" id="deployment">' in section and 'data-key="mobilenet_075|linear_probe|32"' in section
    )
    assert 'id="no-deployment"' not in html
    plain = ResultsStore(f"sqlite:///{tmp_path / 'plain.db'}")
    row["metrics"].pop("deploy")
    assert plain.claim({**cell.store_fields(), "cell_key": cell.key}) and plain.complete(cell.key, row)
    html = build_report(plain, out=tmp_path / "plain" / "report.html").read_text()
    assert 'id="no-deployment"' in html and 'id="deployment"' not in html
