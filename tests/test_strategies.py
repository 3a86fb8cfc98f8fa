"""Strategies on real data (cats_and_dogs_filtered, ImageNet MobileNetV2, 96 px, small subsets, few epochs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from study.cache import features
from study.cache.features import FeatureEngine
from study.config import WeightsDirs, cache_dir, data_dirs, keras_home
from study.data.cell_data import CellData
from study.data.loaders import load_dataset
from study.data.sampling import cap_test, train_val_split
from study.train.strategies import STRATEGIES, get_strategy
from study.train.training import TrainConfig, classification_metrics
from study.zoo.backbones import build_backbone, get_backbone

SIZE = 96
SPEC = get_backbone("mobilenet_v2")


def _cell(ds, n: int, seed: int) -> CellData:
    tr, va = train_val_split(ds.pool.labels, n, seed)
    return CellData(
        ds.name, ds.domain, ds.class_names, ds.source_checksum, SIZE, ds.pool, ds.test, tr, va,
        cap_test(ds.test.labels, 200, seed=0),
    )  # fmt: skip


@pytest.fixture(scope="module")
def cats(datapack):
    return load_dataset("cats_and_dogs_filtered", SIZE, data_dirs(), cache_dir())


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("acts")
    return FeatureEngine(folder, WeightsDirs(keras_home(), folder))


@pytest.fixture(scope="module")
def runs(cats, engine):
    """Every strategy once on the same 200-image cell (memoised: several tests inspect the same runs)."""
    data = _cell(cats, 200, seed=0)
    cfg = TrainConfig(epochs=4, seed=0)
    image = [s for s in STRATEGIES.records() if s.modality == "image" and not s.pair]  # text and pair cells differ
    return data, {s.name: s.run(data, SPEC, cfg, engine) for s in image}


@pytest.mark.parametrize("name", ["feature_extraction", "fine_tune_top", "full_fine_tune", "linear_probe"])
def test_pretrained_strategies_far_above_chance(runs, name):
    data, results = runs
    m = classification_metrics(data.y_test, results[name].test_proba, data.n_classes)
    assert m["accuracy"] >= 0.75, m["accuracy"]  # chance is 0.5 on the balanced test subset
    assert not m["degenerate"]


@pytest.mark.parametrize("name", ["scratch", "scratch_small"])
def test_scratch_strategies_train_from_random_init(runs, name):
    """From scratch on 160 images and 4 epochs is expected to be weak; it must still train and be recorded."""
    data, results = runs
    r = results[name]
    assert r.test_proba.shape == (len(data.test_idx), 2)
    assert len(r.curves) >= 1 and all(np.isfinite(c["loss"]) for c in r.curves)
    assert r.trainable_params > 100_000  # every layer trains


def test_every_strategy_reports_curves_costs_and_a_deployable_model(runs):
    data, results = runs
    for name, r in results.items():
        assert set(r.timings) == {"extract_seconds", "train_seconds", "eval_seconds"}, name
        model = r.model()
        assert model is not None and model.input_shape[1:] == (SIZE, SIZE, 3), name
        assert 0 < r.trainable_params <= r.total_params, name
    for name in ("fine_tune_top", "full_fine_tune"):
        phases = {c["phase"] for c in results[name].curves}
        assert phases == {"head", "fine_tune"}, name


def test_deployable_model_reproduces_the_cached_predictions(runs):
    """Images -> model() must agree with the cached-activation path used in training."""
    data, results = runs
    images = data.test.images[data.test_idx[:16]].astype("float32")
    for name in ("feature_extraction", "fine_tune_top", "linear_probe"):
        direct = np.asarray(results[name].model()(images, training=False))
        np.testing.assert_allclose(direct, results[name].test_proba[:16], atol=2e-3, err_msg=name)


def _weights_by_layer(model):
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in model.layers if layer.weights}


def _trained_backbone(result):
    """The backbone inside the result's deployable model (built from the trained weights)."""
    import keras

    return next(layer for layer in result.model().layers if isinstance(layer, keras.Model))


def test_fine_tune_top_changes_only_the_top_k_blocks(runs):
    """Below the freeze point every weight (BN moving statistics included) is bit-identical to ImageNet's;
    above it trainable weights moved, while BatchNorm moving statistics stayed (inference mode)."""
    _, results = runs
    r = results["fine_tune_top"]
    trained = _trained_backbone(r)
    fresh = _weights_by_layer(build_backbone(SPEC, SIZE, dirs=WeightsDirs(keras_home(), Path())))
    layer_names = [layer.name for layer in trained.layers]
    cut = layer_names.index(r.info["freeze_point"])
    changed = []
    for i, layer in enumerate(trained.layers):
        for a, b in zip(layer.get_weights(), fresh.get(layer.name, []), strict=False):
            same = np.array_equal(a, b)
            if i <= cut:
                assert same, f"frozen layer {layer.name} changed"
            elif layer.__class__.__name__ == "BatchNormalization":
                assert same, f"BatchNorm weights/statistics of {layer.name} changed"
            elif not same:
                changed.append(layer.name)
    assert changed and all(layer_names.index(n) > cut for n in changed)
    assert r.info["top_k"] == SPEC.default_top_k


def test_full_fine_tune_keeps_batchnorm_statistics(runs):
    _, results = runs
    trained = _trained_backbone(results["full_fine_tune"])
    fresh = _weights_by_layer(build_backbone(SPEC, SIZE, dirs=WeightsDirs(keras_home(), Path())))
    bn = [layer for layer in trained.layers if layer.__class__.__name__ == "BatchNormalization"]
    assert bn
    for layer in bn:
        mean, var = layer.get_weights()[2:]
        np.testing.assert_array_equal(mean, fresh[layer.name][2])
        np.testing.assert_array_equal(var, fresh[layer.name][3])


def test_feature_extraction_backbone_is_bit_identical_to_imagenet(runs):
    _, results = runs
    deployed = results["feature_extraction"].model()
    backbone = next(layer for layer in deployed.layers if layer.name.startswith("mobilenetv2"))
    fresh = build_backbone(SPEC, SIZE, dirs=WeightsDirs(keras_home(), Path())).get_weights()
    for a, b in zip(backbone.get_weights(), fresh, strict=True):
        np.testing.assert_array_equal(a, b)


def test_cache_is_hit_on_second_strategy_and_seed(cats, tmp_path, monkeypatch):
    eng = FeatureEngine(tmp_path, WeightsDirs(keras_home(), tmp_path))
    data = _cell(cats, 60, seed=0)
    get_strategy("feature_extraction").run(data, SPEC, TrainConfig(epochs=2, seed=0), eng)
    first = eng.cache.stats.computed_rows
    assert first == len(data.train_idx) + len(data.val_idx) + len(data.test_idx)

    def must_not_build(*args, **kwargs):
        raise AssertionError("the frozen network was rebuilt although every activation was cached")

    monkeypatch.setattr(features, "_build_extractor", must_not_build)
    get_strategy("linear_probe").run(data, SPEC, TrainConfig(seed=0), eng)
    get_strategy("feature_extraction").run(data, SPEC, TrainConfig(epochs=2, seed=1), eng)
    assert eng.cache.stats.computed_rows == first
    assert eng.cache.stats.hit_rows >= 2 * first

    # A new cell (bigger subset of the same pool) computes only the rows it has not seen.
    monkeypatch.undo()
    bigger = _cell(cats, 120, seed=0)
    get_strategy("feature_extraction").run(bigger, SPEC, TrainConfig(epochs=2, seed=0), eng)
    seen = set(data.train_idx) | set(data.val_idx)
    new_rows = len((set(bigger.train_idx) | set(bigger.val_idx)) - seen)
    assert eng.cache.stats.computed_rows == first + new_rows


def test_augmented_views_are_cached_and_recorded(cats, tmp_path):
    eng = FeatureEngine(tmp_path, WeightsDirs(keras_home(), tmp_path))
    data = _cell(cats, 40, seed=0)
    cfg = TrainConfig(epochs=2, augment=True, augment_views=3)
    r = get_strategy("feature_extraction").run(data, SPEC, cfg, eng)
    assert r.info["views"] == 3
    n = len(data.train_idx)
    assert eng.cache.stats.computed_rows == 3 * n + len(data.val_idx) + len(data.test_idx)
    views = eng.pooled(data, SPEC, "pool", data.train_idx, views=3)
    assert not np.allclose(views[0], views[1]) and not np.allclose(views[1], views[2])
    again = features.augment_views(data.pool.images[data.train_idx[:4]], data.train_idx[:4], 1)
    np.testing.assert_array_equal(again, features.augment_views(data.pool.images[data.train_idx[:4]],
                                                                 data.train_idx[:4], 1))  # fmt: skip
