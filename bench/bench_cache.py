"""Benchmark: the activation cache against the tutorials' recipe of running the frozen network every epoch.

    python -m bench.bench_cache [--part single|subgrid|fine_tune_top|throughput|all] [--baseline-fits N|all]

Every part measures both sides in the same process, on the same decoded images (already in memory), with the
same head (dropout 0.2 + dense softmax, L2 1e-4), optimiser (Adam 1e-3, batch 32) and early-stopping rule:

- single        cats_and_dogs_filtered, 2000 train / 1000 validation images, 160 px, 10 epochs: a frozen
                MobileNetV2 inside ``model.fit`` (features recomputed every epoch) vs this engine (extract once
                into the cache, train the head on cached features). Wall time and validation accuracy of each.
- subgrid       feature extraction over 4 training-set sizes x 3 seeds x 10 tuning trials on one dataset and
                backbone (96 px). The engine runs all 120 fits. The recipe runs ``--baseline-fits`` of them
                (default: every size once, 4 fits) and its total is then ESTIMATED as: for each of the 120 fits,
                the epochs that fit ran x the recipe's measured seconds per epoch at that size. Pass
                ``--baseline-fits all`` to measure all 120 (hours on 2 CPU cores).
- fine_tune_top head phase then the top 6 blocks, 5 + 5 epochs at 96 px: the prefix recomputed every epoch
                inside ``model.fit`` vs trained on cached activations at the freeze point.
- throughput    pooled-feature extraction through the cache vs raw ``model.predict`` of the same backbone on
                the same 2000 images (160 px): the fraction of raw throughput the engine keeps.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from typing import Any

import numpy as np

from study import config

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _engine(folder: Any) -> Any:
    """A feature engine on ``folder`` with the environment's weights (this benchmark is an entry point)."""
    from study.cache.features import FeatureEngine

    return FeatureEngine(folder, config.weights_dirs())


def _cell(images: np.ndarray, labels: np.ndarray, n_train: int, size: int, fingerprint: str) -> Any:
    """Pool = train + validation images; the engine validates on the same 1000 images the recipe does."""
    from study.data.cell_data import CellData
    from study.data.loaders import ImageSet

    pool = ImageSet(images, labels, [str(i) for i in range(len(labels))])
    return CellData(
        "cats_and_dogs_filtered", "natural", ["cats", "dogs"], fingerprint, size, pool, pool,
        np.arange(n_train), np.arange(n_train, len(labels)), np.arange(2),
    )  # fmt: skip


def _load(size: int) -> tuple[np.ndarray, np.ndarray, str]:
    from study.data.catalog import load

    ds = load("cats_and_dogs_filtered", size)
    images = np.concatenate([ds.pool.images, ds.test.images])
    labels = np.concatenate([ds.pool.labels, ds.test.labels])
    return images, labels, f"{ds.source_checksum}-bench"


def _recipe_model(spec: Any, size: int, cfg: Any, top_k: int | None = None) -> tuple[Any, Any]:
    """The tutorials' model: image -> frozen backbone (or frozen prefix + trainable top) -> GAP -> head."""
    import keras

    from study.train.strategies import unfreeze
    from study.zoo.backbones import build_backbone

    backbone = build_backbone(spec, size, dirs=config.weights_dirs())
    backbone.trainable = False
    inp = keras.Input((size, size, 3))
    x = backbone(inp, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(cfg.dropout)(x)
    out = keras.layers.Dense(2, activation="softmax", kernel_regularizer=keras.regularizers.L2(cfg.weight_decay))(x)
    model = keras.Model(inp, out)
    if top_k is not None:
        cut = [layer.name for layer in backbone.layers].index(spec.freeze_point(top_k))

        def open_top() -> None:
            unfreeze(backbone)
            for layer in backbone.layers[: cut + 1]:
                layer.trainable = False

        return model, open_top
    return model, None


def _recipe_fit(model: Any, spec: Any, images: np.ndarray, labels: np.ndarray, tr: Any, va: Any, cfg: Any,
                lr: float) -> list[dict]:  # fmt: skip
    from study.train.training import compile_classifier, fit, make_dataset
    from study.zoo.backbones import preprocess_fn

    prep = preprocess_fn(spec)

    def transform(x: Any, y: Any) -> Any:
        import tensorflow as tf

        return prep(tf.cast(x, tf.float32)), y

    train_ds = make_dataset(images[tr], labels[tr], cfg.batch_size, True, cfg.seed, transform)
    val_ds = make_dataset(images[va], labels[va], cfg.batch_size, False, cfg.seed, transform)
    compile_classifier(model, lr)
    return fit(model, train_ds, val_ds, cfg.epochs, cfg.patience, "recipe")


def _recipe_accuracy(model: Any, spec: Any, images: np.ndarray, labels: np.ndarray) -> float:
    from study.train.strategies import _predict_images

    return float((_predict_images(model, images, spec).argmax(1) == labels).mean())


def part_single(args: argparse.Namespace) -> dict[str, float]:
    from study.train.strategies import run_feature_extraction
    from study.train.training import TrainConfig
    from study.zoo.backbones import get_backbone

    size, spec = 160, get_backbone("mobilenet_v2")
    images, labels, fp = _load(size)
    cfg = TrainConfig(epochs=10, patience=10, lr_head=1e-3, dropout=0.2, weight_decay=1e-4, seed=0)
    tr, va = np.arange(2000), np.arange(2000, 3000)

    t0 = time.perf_counter()
    model, _ = _recipe_model(spec, size, cfg)
    _recipe_fit(model, spec, images, labels, tr, va, cfg, cfg.lr_head)
    recipe_acc = _recipe_accuracy(model, spec, images[va], labels[va])
    recipe_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        r = run_feature_extraction(_cell(images, labels, 2000, size, fp), spec, cfg, _engine(tmp))
        engine_acc = float((r.val_proba.argmax(1) == labels[va]).mean())
        engine_s = time.perf_counter() - t0
    return {"recipe_s": recipe_s, "engine_s": engine_s, "speedup": recipe_s / engine_s,
            "recipe_acc": recipe_acc, "engine_acc": engine_acc}  # fmt: skip


def _trial_configs(n: int, rng_seed: int = 0) -> list[dict[str, float]]:
    rng = np.random.default_rng(rng_seed)
    return [
        {"lr_head": float(10 ** rng.uniform(-4, -2)), "dropout": float(rng.uniform(0, 0.5)),
         "weight_decay": float(10 ** rng.uniform(-6, -2))}
        for _ in range(n)
    ]  # fmt: skip


def part_subgrid(args: argparse.Namespace) -> dict[str, float]:
    from study.data.cell_data import CellData
    from study.data.sampling import train_val_split
    from study.train.strategies import run_feature_extraction
    from study.train.training import TrainConfig
    from study.zoo.backbones import get_backbone

    size, spec = 96, get_backbone("mobilenet_v2")
    images, labels, fp = _load(size)
    pool_n = 2000  # training pool: the train folder; the test set: 500 validation images
    test_idx = np.arange(2000, 2500)
    sizes, seeds, trials = (100, 250, 500, 1000), (0, 1, 2), _trial_configs(10)
    base = TrainConfig(epochs=10, patience=3, seed=0)
    from study.data.loaders import ImageSet

    pool = ImageSet(images, labels, [str(i) for i in range(len(labels))])
    fits = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = _engine(tmp)
        t0 = time.perf_counter()
        for n in sizes:
            for seed in seeds:
                tr, va = train_val_split(labels[:pool_n], n, seed)
                data = CellData("cats", "natural", ["cats", "dogs"], fp, size, pool, pool, tr, va, test_idx)
                for k, params in enumerate(trials):
                    r = run_feature_extraction(data, spec, replace(base, seed=seed, **params), engine)
                    fits.append({"n": n, "seed": seed, "trial": k, "epochs": len(r.curves), "tr": tr, "va": va})
        engine_s = time.perf_counter() - t0
        extract_s = engine.cache.stats.extract_seconds

    # The recipe: a sample of the same fits, measured; seconds per epoch at each size.
    sample = fits if args.baseline_fits == "all" else _one_per_size(fits, int(args.baseline_fits))
    per_epoch: dict[int, list[float]] = {}
    eval_s: dict[int, list[float]] = {}
    measured_s = 0.0
    for f in sample:
        cfg = replace(base, seed=f["seed"], **trials[f["trial"]])
        t0 = time.perf_counter()
        model, _ = _recipe_model(spec, size, cfg)
        curves = _recipe_fit(model, spec, images, labels, f["tr"], f["va"], cfg, cfg.lr_head)
        t1 = time.perf_counter()
        _recipe_accuracy(model, spec, images[test_idx], labels[test_idx])
        t2 = time.perf_counter()
        per_epoch.setdefault(f["n"], []).append((t1 - t0) / len(curves))
        eval_s.setdefault(f["n"], []).append(t2 - t1)
        measured_s += t2 - t0
    if args.baseline_fits == "all":
        recipe_s = measured_s
    else:
        recipe_s = sum(f["epochs"] * np.mean(per_epoch[f["n"]]) + np.mean(eval_s[f["n"]]) for f in fits)
    return {"fits": len(fits), "engine_s": engine_s, "engine_extract_s": extract_s, "recipe_s": recipe_s,
            "recipe_measured_fits": len(sample), "recipe_measured_s": measured_s,
            "recipe_estimated": args.baseline_fits != "all", "speedup": recipe_s / engine_s}  # fmt: skip


def _one_per_size(fits: list[dict], per_size: int) -> list[dict]:
    out: list[dict] = []
    for n in sorted({f["n"] for f in fits}):
        out += [f for f in fits if f["n"] == n][:per_size]
    return out


def part_fine_tune_top(args: argparse.Namespace) -> dict[str, float]:
    from study.train.strategies import run_fine_tune_top
    from study.train.training import TrainConfig
    from study.zoo.backbones import get_backbone

    size, spec = 96, get_backbone("mobilenet_v2")
    images, labels, fp = _load(size)
    k = spec.default_top_k
    cfg = TrainConfig(epochs=5, patience=5, lr_head=1e-3, lr_finetune=1e-4, dropout=0.2, weight_decay=1e-4, seed=0)
    tr, va = np.arange(2000), np.arange(2000, 3000)

    t0 = time.perf_counter()
    model, open_top = _recipe_model(spec, size, cfg, top_k=k)
    _recipe_fit(model, spec, images, labels, tr, va, cfg, cfg.lr_head)
    open_top()
    _recipe_fit(model, spec, images, labels, tr, va, cfg, cfg.lr_finetune)
    recipe_acc = _recipe_accuracy(model, spec, images[va], labels[va])
    recipe_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        r = run_fine_tune_top(_cell(images, labels, 2000, size, fp), spec, replace(cfg, top_k=k), _engine(tmp))
        engine_acc = float((r.val_proba.argmax(1) == labels[va]).mean())
        engine_s = time.perf_counter() - t0
    return {"top_k": k, "recipe_s": recipe_s, "engine_s": engine_s, "speedup": recipe_s / engine_s,
            "recipe_acc": recipe_acc, "engine_acc": engine_acc}  # fmt: skip


def part_throughput(args: argparse.Namespace) -> dict[str, float]:
    import keras

    from study.train.training import TrainConfig
    from study.zoo.backbones import build_backbone, get_backbone, preprocess

    size, spec = 160, get_backbone("mobilenet_v2")
    images, labels, fp = _load(size)
    images = images[:2000]
    data = _cell(images, labels[:2000], 2000, size, fp)
    del TrainConfig
    backbone = build_backbone(spec, size, dirs=config.weights_dirs())
    raw = keras.Sequential([backbone, keras.layers.GlobalAveragePooling2D()])
    x = preprocess(spec, images)  # preprocessing is not timed on the raw side: the reference is the network alone
    raw.predict(x[:64], batch_size=64, verbose=0)  # warm-up: tracing is not throughput
    raw.predict_on_batch(x[:64])
    t0 = time.perf_counter()
    ref = raw.predict(x, batch_size=64, verbose=0)
    predict_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, len(x), 64):
        raw.predict_on_batch(x[i : i + 64])
    on_batch_s = time.perf_counter() - t0
    raw_s = min(predict_s, on_batch_s)  # the faster of Keras' two inference paths is the reference
    with tempfile.TemporaryDirectory() as tmp:
        engine = _engine(tmp)
        engine.pooled(data, spec, "pool", np.arange(64))  # the same warm-up on our side
        t0 = time.perf_counter()
        feats = engine.pooled(data, spec, "pool", np.arange(2000))[0]
        engine_s = time.perf_counter() - t0
    np.testing.assert_allclose(feats[64:], ref[64:], atol=1e-3)  # same features
    return {"images": 1936, "raw_predict_img_per_s": 2000 / predict_s, "raw_on_batch_img_per_s": 2000 / on_batch_s,
            "engine_img_per_s": 1936 / engine_s, "fraction": (1936 / engine_s) / (2000 / raw_s)}  # fmt: skip


PARTS = {"single": part_single, "subgrid": part_subgrid, "fine_tune_top": part_fine_tune_top,
         "throughput": part_throughput}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=[*PARTS, "all"], default="all")
    p.add_argument("--baseline-fits", default="1", help="recipe fits measured per size in subgrid, or 'all'")
    args = p.parse_args()
    import platform

    import tensorflow as tf

    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}, TF {tf.__version__}")  # fmt: skip
    for name in PARTS if args.part == "all" else [args.part]:
        t0 = time.perf_counter()
        result = PARTS[name](args)
        shown = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())
        print(f"[{name}] {shown}  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
