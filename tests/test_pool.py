"""Pooled models (study.train.pool): a traced model reused across cells trains exactly as a freshly built one."""

from __future__ import annotations

import numpy as np
import pytest

from study.cache.features import FeatureEngine
from study.config import WeightsDirs, cache_dir, data_dirs, keras_home
from study.data.cell_data import CellData
from study.data.loaders import load_dataset
from study.data.sampling import cap_test, train_val_split
from study.train import pool
from study.train.strategies import get_strategy
from study.train.training import TrainConfig
from study.zoo.backbones import get_backbone

SIZE = 32
SPEC = get_backbone("mobilenet_v2")
IMAGE_LEVEL = ["fine_tune_top", "full_fine_tune", "scratch_small"]  # scratch shares scratch_small's code path


@pytest.fixture(scope="module")
def cats(datapack):
    return load_dataset("cats_and_dogs_filtered", SIZE, data_dirs(), cache_dir())


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("acts")
    return FeatureEngine(folder, WeightsDirs(keras_home(), folder))


def _cell(ds, n: int, seed: int) -> CellData:
    tr, va = train_val_split(ds.pool.labels, n, seed)
    return CellData(
        ds.name, ds.domain, ds.class_names, ds.source_checksum, SIZE, ds.pool, ds.test, tr, va,
        cap_test(ds.test.labels, 60, seed=0),
    )  # fmt: skip


@pytest.mark.parametrize("name", IMAGE_LEVEL)
def test_a_reused_model_trains_exactly_as_a_fresh_one(cats, engine, name):
    """Cell A on a fresh model, then cell B on the same pooled model, then A again on it: A's two runs are
    bit-identical (weights, optimiser state and dropout seeds all reset), and only the first built a model."""
    strategy = get_strategy(name)
    a, b = _cell(cats, 40, seed=0), _cell(cats, 50, seed=1)
    cfg_a, cfg_b = TrainConfig(epochs=2, seed=0), TrainConfig(epochs=1, seed=1)
    pool.clear()
    first = strategy.run(a, SPEC, cfg_a, engine)
    assert len(pool._POOL) == 1
    other = strategy.run(b, SPEC, cfg_b, engine)
    again = strategy.run(a, SPEC, cfg_a, engine)
    assert len(pool._POOL) == 1  # one architecture: built and traced once
    np.testing.assert_array_equal(first.val_proba, again.val_proba)
    np.testing.assert_array_equal(first.test_proba, again.test_proba)
    assert [c["val_loss"] for c in first.curves] == [c["val_loss"] for c in again.curves]
    assert not np.array_equal(first.test_proba[: len(other.test_proba)], other.test_proba)


@pytest.mark.parametrize("name", ["fine_tune_top", "scratch_small"])
def test_the_deployable_model_keeps_its_cells_weights_after_the_pool_trains_on(cats, engine, name):
    """The deployable model is built on demand; by then the pooled model may have trained another cell."""
    strategy = get_strategy(name)
    a = _cell(cats, 40, seed=0)
    pool.clear()
    result = strategy.run(a, SPEC, TrainConfig(epochs=1, seed=0), engine)
    strategy.run(_cell(cats, 50, seed=1), SPEC, TrainConfig(epochs=1, seed=1), engine)
    model = result.model()
    proba = model.predict(a.test.images[a.test_idx].astype("float32"), verbose=0)
    np.testing.assert_allclose(proba, result.test_proba, atol=1e-5)


def test_a_different_architecture_gets_its_own_model(cats, engine):
    """Hyper-parameters traced into the graph (dropout rate) are part of the key: no silent reuse across them."""
    strategy = get_strategy("scratch_small")
    a = _cell(cats, 40, seed=0)
    pool.clear()
    strategy.run(a, SPEC, TrainConfig(epochs=1, seed=0, dropout=0.2), engine)
    strategy.run(a, SPEC, TrainConfig(epochs=1, seed=0, dropout=0.4), engine)
    assert len(pool._POOL) == 2



def _tiny_model():
    import keras

    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((12,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(3, activation="softmax")])  # fmt: skip


def test_fused_adam_follows_keras_adams_rule():
    """compile_classifier's fused Adam takes the same steps as keras.optimizers.Adam (up to float rounding), with
    the pool's reset (zeroed state) and a learning rate changed after compiling, as a pooled model gets it."""
    import keras

    from study.train.training import compile_classifier

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 12)).astype("float32"), rng.integers(0, 3, 64)

    def trained(fused: bool) -> list[np.ndarray]:
        model = _tiny_model()
        if fused:
            compile_classifier(model, 0.5)
            for v in model.optimizer.variables:
                v.assign(np.zeros(v.shape, dtype=v.dtype))
            model.optimizer.learning_rate.assign(3e-2)
        else:
            model.compile(optimizer=keras.optimizers.Adam(3e-2), loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
        return [w.numpy() for w in model.weights]

    initial = [w.numpy() for w in _tiny_model().weights]
    keras_adam, fused_adam = trained(False), trained(True)
    assert max(float(np.abs(a - b).max()) for a, b in zip(keras_adam, initial, strict=True)) > 0.05  # it trained
    for a, b in zip(keras_adam, fused_adam, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
