"""Strategy registry: the ways of using (or not using) an ImageNet backbone, each with its recipe.

Every strategy takes one cell's data, a backbone and a ``TrainConfig`` and returns a ``FitResult``. Whatever
is frozen is read from the activation cache (``study.cache.features``), never recomputed:

- ``feature_extraction`` trains a new head on cached pooled features;
- ``fine_tune_top`` reuses that head phase, then trains only the top k blocks on cached activations at the
  freeze point (the prefix below it is never run again);
- ``full_fine_tune`` reuses the head phase, then must run the whole network (everything trains);
- ``linear_probe`` fits scikit-learn's logistic regression on the cached pooled features;
- ``scratch`` / ``scratch_small`` train from random initialisation on images.

Pretrained BatchNorm layers always stay frozen, in inference mode with their ImageNet statistics, also inside
unfrozen blocks (the Keras fine-tuning guide's rule: small training sets would wreck the moving statistics).
``trainable=False`` is what enforces it: Keras 3's functional models pass the outer ``training=True`` of
``fit`` down through a nested ``base(x, training=False)`` call, so the tutorials' argument alone does not.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import study.train.pool as pool  # not "from study.train import": that would import the package (an import circle)
from study.cache.features import POOLED, FeatureEngine
from study.data.cell_data import CellData
from study.registry import Registry
from study.train.head import HeadWeights, train_head
from study.train.pointwise import pointwise_as_matmul
from study.train.training import (
    FitResult,
    TrainConfig,
    count_params,
    fit,
    make_dataset,
    predict_proba,
)
from study.zoo.backbones import BackboneSpec, build_backbone, preprocess_fn, split_at

RunFn = Callable[[CellData, BackboneSpec | None, TrainConfig, FeatureEngine], FitResult]
"""(cell data, backbone record or None for a strategy without one, hyper-parameters, cache) -> result."""


@dataclass(frozen=True)
class Strategy:
    """Everything the study, the advisor and the report need to know about one way of using a backbone.

    No other module keeps a table keyed by strategy names: tuning reads ``params``, the sweep's time estimate
    reads the cost hints, the statistics read ``baseline``, the advisor reads ``freeze_level``/``freeze_text``/
    ``textbook`` and the report reads the display fields. A plugin strategy is one such record.
    """

    name: str
    run: RunFn
    recipe: str  # what it does, in a sentence or two (shown by the advisor and the report)
    pretrained: bool  # loads ImageNet weights (needs the weights file and a domain-similarity score)
    baseline: bool = False  # a from-scratch baseline that transfer has to beat (``study.analysis.stats``)
    uses_backbone: bool = True  # False: the backbone axis does not apply (the store's column says "none")
    cached: bool = True  # trains on cached activations (cheap to tune)
    params: tuple[str, ...] = ()  # TrainConfig fields it reads and tuning searches (``study.train.tuning.PARAMS``)
    freeze_level: int = 0  # how much pretrained network stays frozen: 3 = all of it ... 0 = nothing pretrained
    freeze_text: str = ""  # the advisor's one-line "what to freeze" ({top_k} is filled in)
    seconds_per_image_epoch: float = 0.01  # cost hint at 96 px on 2 CPU cores, until the store has measurements
    fixed_seconds: float = 1.0  # cost hint: building and tracing per trial
    label: str = ""  # display name
    abbreviation: str = ""  # short display name (figure facets)
    colour: str | None = None  # fixed colour in every figure (None: one from the colour-blind palette)
    order: int = 100  # position in tables and legends
    curve_example: int | None = None  # rank among the report's example learning curves (None: after the ranked)
    textbook: tuple[tuple[str, int], ...] = ()  # ("small/similar", rank): the 2x2 rule's preference per quadrant
    modality: str = "image"  # the datasets it trains on ("image" or "text"): grids pair it with those only
    pair: bool = False  # trains on a (source, target) cell: ``CellData.source`` is set (study.train.adaptation)
    needs_target_labels: bool = False  # a pair strategy that cannot run at n_target_labels = 0

    @property
    def display(self) -> str:
        return self.label or self.name


STRATEGIES: Registry[Strategy] = Registry("strategy")
register_strategy = STRATEGIES.register
get_strategy = STRATEGIES.get


def list_strategies() -> list[str]:
    """Strategy names in display order."""
    return [s.name for s in strategy_records()]


def strategy_records() -> list[Strategy]:
    """Every registered strategy, in display order."""
    return sorted(STRATEGIES.records(), key=lambda s: s.order)


def baseline_strategies() -> tuple[str, ...]:
    """The from-scratch baselines: what ``negative_transfer`` and the transfer gain compare against."""
    return tuple(s.name for s in strategy_records() if s.baseline)


def strategy_or_none(name: str) -> Strategy | None:
    """The record, or None for a strategy this installation does not know (a row from a plugin not loaded)."""
    return STRATEGIES.get(name) if name in STRATEGIES else None


def is_text_strategy(name: Any) -> bool:
    """Whether ``name`` is a known text strategy (its record's ``modality``); unknown names are not."""
    record = strategy_or_none(str(name))
    return record is not None and record.modality == "text"


# --------------------------------------------------------------------------------------------- building blocks


def unfreeze(model: Any) -> Any:
    """Make every layer trainable except BatchNorm, which stays frozen in inference mode (see module doc)."""
    import keras

    model.trainable = True
    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        stack.extend(getattr(layer, "layers", []))
    return model


def _seed(cfg: TrainConfig) -> None:
    import keras

    keras.utils.set_random_seed(cfg.seed)


def _head(n_classes: int, cfg: TrainConfig, name: str = "head") -> Any:
    """GAP'd features -> dropout -> dense softmax (the classifier every pretrained strategy adds).

    Dropout is seeded by the cell's seed. Unseeded, Keras draws its seed from Python's global random state at
    construction, which depends on what ran before in the process: a cold activation cache builds a backbone first,
    so the same cell trained differently with a cold and a warm cache (measured: dropout seed states 980338160 vs
    906691060, different fine-tuning losses from the first epoch on)."""
    import keras

    return keras.Sequential(
        [
            keras.layers.Dropout(cfg.dropout, seed=cfg.seed),
            keras.layers.Dense(
                n_classes, activation="softmax", kernel_regularizer=keras.regularizers.L2(cfg.weight_decay)
            ),
        ],
        name=name,
    )


def _view_sampler(views: int) -> Any:
    """Per-batch transform picking one cached augmented view per example (identity for a single view)."""
    import tensorflow as tf

    if views == 1:
        return lambda x, y: (x[:, 0], y)

    def pick(x: Any, y: Any) -> Any:
        v = tf.random.uniform([tf.shape(x)[0]], 0, views, dtype=tf.int32)
        return tf.gather(x, v, axis=1, batch_dims=1), y

    return pick


def _views(cfg: TrainConfig) -> int:
    return cfg.augment_views if cfg.augment else 1


def _fit_on_cached(
    model: Any, train_x: np.ndarray, data: CellData, val_x: np.ndarray, cfg: TrainConfig, phase: str
) -> list[dict[str, Any]]:
    """Fit a compiled model on cached inputs: ``train_x`` is (views, n, ...), ``val_x`` is (n, ...)."""
    train_ds = make_dataset(
        np.moveaxis(train_x, 0, 1), data.y_train, cfg.batch_size, True, cfg.seed, _view_sampler(len(train_x))
    )
    val_ds = make_dataset(val_x, data.y_val, cfg.batch_size, False, cfg.seed)
    return fit(model, train_ds, val_ds, cfg.epochs, cfg.patience, phase)


@dataclass
class _HeadPhase:
    weights: HeadWeights
    head: Any  # the same weights as a Keras head, for phase 2 and deployment
    curves: list[dict[str, Any]]
    train_seconds: float


def _train_head(
    data: CellData, spec: BackboneSpec, cfg: TrainConfig, engine: FeatureEngine, via: str | None = None
) -> _HeadPhase:
    """Head-only training on cached pooled features: feature extraction, and phase 1 of both fine-tunes.

    ``via``: derive missing pooled features from that layer's cached activations (``FeatureEngine.pooled``).
    """
    ftr = engine.pooled(data, spec, "pool", data.train_idx, _views(cfg), via=via)
    fval = engine.pooled(data, spec, "pool", data.val_idx, via=via)[0]
    t0 = time.perf_counter()
    weights, curves = train_head(ftr, data.y_train, fval, data.y_val, data.n_classes, cfg)
    return _HeadPhase(weights, weights.to_keras(cfg), curves, time.perf_counter() - t0)


def deployable(spec: BackboneSpec, backbone: Any, head: Any, image_size: int) -> Any:
    """Images (float RGB 0..255) in, probabilities out: preprocessing, backbone, pooling and head in one model."""
    import keras

    from study.zoo.preprocessing import Preprocess

    inp = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = Preprocess(spec.preprocessing, name="preprocess")(inp)
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, head(x), name=f"{spec.name}_classifier")


def _finish(
    data: CellData,
    spec: BackboneSpec,
    engine: FeatureEngine,
    extract_before: float,
    predict_val: Callable[[], np.ndarray],
    predict_test: Callable[[], np.ndarray],
    curves: list[dict[str, Any]],
    train_seconds: float,
    trainable: int,
    build_model: Callable[[], Any] | None,
    info: dict[str, Any],
) -> FitResult:
    t0 = time.perf_counter()
    val_proba, test_proba = predict_val(), predict_test()
    eval_seconds = time.perf_counter() - t0
    return FitResult(
        val_proba=val_proba,
        test_proba=test_proba,
        curves=curves,
        timings={
            "extract_seconds": engine.cache.stats.extract_seconds - extract_before,
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
        },
        trainable_params=trainable,
        build_model=build_model,
        info=info,
    )


# ------------------------------------------------------------------------------------------------- strategies


def run_feature_extraction(data: CellData, spec: BackboneSpec, cfg: TrainConfig, engine: FeatureEngine) -> FitResult:
    _seed(cfg)
    before = engine.cache.stats.extract_seconds
    phase = _train_head(data, spec, cfg, engine)
    fval = engine.pooled(data, spec, "pool", data.val_idx)[0]
    ftest = engine.pooled(data, spec, "test", data.test_idx)[0]
    return _finish(
        data,
        spec,
        engine,
        before,
        lambda: phase.weights.predict_proba(fval),
        lambda: phase.weights.predict_proba(ftest),
        phase.curves,
        phase.train_seconds,
        int(phase.weights.kernel.size + phase.weights.bias.size),
        lambda: deployable(
            spec, _frozen(build_backbone(spec, data.image_size, dirs=engine.weights)), phase.head, data.image_size
        ),
        {"views": _views(cfg), "freeze_point": POOLED},
    )


def _classifier(features: Any, head: Any, inputs: Any) -> Any:
    """``inputs`` -> ``features`` (a backbone or its top, inference-mode BatchNorm) -> average pooling -> ``head``."""
    import keras

    x = features(inputs, training=False)
    return keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(x)))


def _reset_pretrained(pooled: pool.Pooled, head: Any) -> None:
    """A pooled pretrained classifier as a fresh one: ImageNet weights, then the head phase's weights."""
    pool.assign(pooled.backbone.variables, pooled.initial)
    pool.assign(pooled.head.variables, head.variables)


def _deployable_later(pooled: pool.Pooled, spec: BackboneSpec, data: CellData, cfg: TrainConfig) -> Callable[[], Any]:
    """Build the deployable model on demand from the weights the pooled model holds *now* (it trains on later)."""
    backbone_values = pool.snapshot(pooled.backbone.variables)
    head_values = pool.snapshot(pooled.head.variables)

    def build() -> Any:
        backbone = build_backbone(spec, data.image_size, weights=None)
        pool.assign(backbone.variables, backbone_values)
        head = _head(data.n_classes, cfg)
        head.build((None, backbone.output.shape[-1]))
        pool.assign(head.variables, head_values)
        return deployable(spec, _frozen(backbone), head, data.image_size)

    return build


def run_fine_tune_top(data: CellData, spec: BackboneSpec, cfg: TrainConfig, engine: FeatureEngine) -> FitResult:
    import keras

    _seed(cfg)
    before = engine.cache.stats.extract_seconds
    k = cfg.top_k or spec.default_top_k
    layer = spec.freeze_point(k)
    phase = _train_head(data, spec, cfg, engine, via=layer)
    views = _views(cfg)
    atr = engine.activations(data, spec, layer, "pool", data.train_idx, views)
    aval = engine.activations(data, spec, layer, "pool", data.val_idx)[0]
    atest = engine.activations(data, spec, layer, "test", data.test_idx)[0]

    def build() -> pool.Pooled:
        backbone = pointwise_as_matmul(build_backbone(spec, data.image_size, dirs=engine.weights))
        prefix, top = split_at(backbone, layer)
        prefix.trainable = False
        unfreeze(top)
        head = _head(data.n_classes, cfg)
        model = _classifier(top, head, keras.Input(shape=atr.shape[2:]))
        return pool.Pooled(model, backbone, head)

    key = ("fine_tune_top", spec.name, data.image_size, layer, data.n_classes, cfg.dropout, cfg.weight_decay)
    pooled = pool.compiled(key, build, cfg.lr_finetune)
    _reset_pretrained(pooled, phase.head)
    model = pooled.model
    t0 = time.perf_counter()
    curves = phase.curves + _fit_on_cached(model, atr, data, aval, cfg, "fine_tune")
    train_seconds = phase.train_seconds + time.perf_counter() - t0
    trainable = count_params(model)[0]
    return _finish(
        data,
        spec,
        engine,
        before,
        lambda: predict_proba(model, aval),
        lambda: predict_proba(model, atest),
        curves,
        train_seconds,
        trainable,
        _deployable_later(pooled, spec, data, cfg),
        {"views": views, "freeze_point": layer, "top_k": k},
    )


def _image_pipeline(spec: BackboneSpec | None, cfg: TrainConfig, training: bool) -> Any:
    """Per-batch transform for models trained on images: online augmentation (train only), preprocessing."""
    import keras
    import tensorflow as tf

    prep = preprocess_fn(spec) if spec is not None else (lambda x: x)
    aug = None
    if training and cfg.augment:
        aug = keras.Sequential(
            [
                keras.layers.RandomFlip("horizontal", seed=cfg.seed),
                keras.layers.RandomRotation(0.1, seed=cfg.seed),
                keras.layers.RandomZoom(0.1, seed=cfg.seed),
                keras.layers.RandomContrast(0.1, seed=cfg.seed),
            ]
        )

    def transform(x: Any, y: Any) -> Any:
        x = tf.cast(x, tf.float32)
        if aug is not None:
            x = aug(x, training=True)
        return prep(x), y

    return transform


def _fit_on_images(model: Any, data: CellData, spec: BackboneSpec | None, cfg: TrainConfig, phase: str) -> Any:
    """Fit a compiled model on the cell's images (``spec``: whose preprocessing, None = the model's own)."""
    train_ds = make_dataset(
        data.pool.images[data.train_idx], data.y_train, cfg.batch_size, True, cfg.seed, _image_pipeline(spec, cfg, True)
    )
    val_ds = make_dataset(
        data.pool.images[data.val_idx], data.y_val, cfg.batch_size, False, cfg.seed, _image_pipeline(spec, cfg, False)
    )
    return fit(model, train_ds, val_ds, cfg.epochs, cfg.patience, phase)


def _predict_images(model: Any, images: np.ndarray, spec: BackboneSpec | None) -> np.ndarray:
    import tensorflow as tf

    prep = preprocess_fn(spec) if spec is not None else (lambda x: x)
    ds = tf.data.Dataset.from_tensor_slices(images).batch(64).map(lambda x: prep(tf.cast(x, tf.float32)))
    return np.asarray(model.predict(ds.prefetch(tf.data.AUTOTUNE), verbose=0), dtype=np.float64)


def _frozen(model: Any) -> Any:
    model.trainable = False
    return model


def run_full_fine_tune(data: CellData, spec: BackboneSpec, cfg: TrainConfig, engine: FeatureEngine) -> FitResult:
    import keras

    _seed(cfg)
    before = engine.cache.stats.extract_seconds
    phase = _train_head(data, spec, cfg, engine)

    def build() -> pool.Pooled:
        backbone = unfreeze(pointwise_as_matmul(build_backbone(spec, data.image_size, dirs=engine.weights)))
        head = _head(data.n_classes, cfg)
        model = _classifier(backbone, head, keras.Input(shape=(data.image_size, data.image_size, 3)))
        return pool.Pooled(model, backbone, head)

    key = ("full_fine_tune", spec.name, data.image_size, data.n_classes, cfg.dropout, cfg.weight_decay)
    pooled = pool.compiled(key, build, cfg.lr_finetune)
    _reset_pretrained(pooled, phase.head)
    model = pooled.model
    t0 = time.perf_counter()
    curves = phase.curves + _fit_on_images(model, data, spec, cfg, "fine_tune")
    train_seconds = phase.train_seconds + time.perf_counter() - t0
    trainable = count_params(model)[0]
    return _finish(
        data,
        spec,
        engine,
        before,
        lambda: _predict_images(model, data.pool.images[data.val_idx], spec),
        lambda: _predict_images(model, data.test.images[data.test_idx], spec),
        curves,
        train_seconds,
        trainable,
        _deployable_later(pooled, spec, data, cfg),
        {"views": 1, "freeze_point": None},
    )


def _scratch_model(spec: BackboneSpec, data: CellData, cfg: TrainConfig) -> Any:
    """The backbone's architecture, randomly initialised, with a new head (BatchNorm trains normally)."""
    backbone = _short_run_batchnorm(build_backbone(spec, data.image_size, weights=None))
    return _classifier_training_bn(backbone, _head(data.n_classes, cfg), data.image_size)


def _classifier_training_bn(backbone: Any, head: Any, image_size: int) -> Any:
    import keras

    inp = keras.Input(shape=(image_size, image_size, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inp))  # BatchNorm trains normally here
    return keras.Model(inp, head(x))


def run_scratch(data: CellData, spec: BackboneSpec, cfg: TrainConfig, engine: FeatureEngine) -> FitResult:
    _seed(cfg)
    key = ("scratch", spec.name, data.image_size, data.n_classes, cfg.dropout, cfg.weight_decay)
    return _train_from_scratch(key, lambda: _scratch_model(spec, data, cfg), data, spec, spec, cfg, engine,
                               trained_form=pointwise_as_matmul)  # fmt: skip


def _train_from_scratch(
    key: tuple, fresh: Callable[[], Any], data: CellData, spec: BackboneSpec | None, prep: BackboneSpec | None,
    cfg: TrainConfig, engine: FeatureEngine, trained_form: Callable[[Any], Any] = lambda model: model,
) -> FitResult:  # fmt: skip
    """Train a randomly initialised model on images (``prep``: whose preprocessing, None = the model's own).

    ``fresh()`` builds the model with this cell's seeded initial values; the pooled (already traced) model of
    ``key`` takes them over, so only the first cell of an architecture pays for tracing. ``trained_form`` turns
    it into the form that is trained (``pointwise_as_matmul``); the deployable model is ``fresh()``'s form."""
    before = engine.cache.stats.extract_seconds
    initial = fresh()
    model = pool.compiled(key, lambda: pool.Pooled(trained_form(initial)), cfg.lr_head).model
    if model is not initial:  # a model built before (or ``trained_form``'s copy): give it this cell's values
        pool.assign(model.variables, initial.variables)
    t0 = time.perf_counter()
    curves = _fit_on_images(model, data, prep, cfg, "scratch")
    train_seconds = time.perf_counter() - t0
    values = pool.snapshot(model.variables)

    def build() -> Any:
        trained = fresh()
        pool.assign(trained.variables, values)
        return _with_preprocessing(trained, prep, data.image_size) if prep is not None else trained

    return _finish(
        data,
        spec,
        engine,
        before,
        lambda: _predict_images(model, data.pool.images[data.val_idx], prep),
        lambda: _predict_images(model, data.test.images[data.test_idx], prep),
        curves,
        train_seconds,
        count_params(model)[0],
        build,
        {"views": 1, "freeze_point": None},
    )


def _short_run_batchnorm(model: Any, momentum: float = 0.9) -> Any:
    """BatchNorm momentum 0.9 instead of Keras Applications' 0.999 for training from scratch.

    With 0.999 the moving statistics used at inference still sit near their initial values after the few
    hundred steps of a small-data run, so the model predicts one class (measured: MobileNetV2 from scratch on
    1000 CIFAR-10 images at 64 px scored exactly chance, 0.100) although it trained fine.
    """
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
    return model


def _with_preprocessing(model: Any, spec: BackboneSpec | None, image_size: int) -> Any:
    import keras

    from study.zoo.preprocessing import Preprocess

    inp = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = Preprocess(spec.preprocessing, name="preprocess")(inp) if spec is not None else inp
    return keras.Model(inp, model(x, training=False))


def small_cnn(image_size: int, n_classes: int, cfg: TrainConfig) -> Any:
    """Four conv blocks without BatchNorm: with early stopping on small sets, BN variants collapsed to one class."""
    import keras

    layers: list[Any] = [keras.Input(shape=(image_size, image_size, 3)), keras.layers.Rescaling(1 / 255.0)]
    for filters in (32, 64, 128, 128):
        layers += [keras.layers.Conv2D(filters, 3, padding="same", activation="relu")]
        if image_size >= 16:
            layers += [keras.layers.MaxPooling2D()]
            image_size //= 2
    layers += [keras.layers.GlobalAveragePooling2D(), _head(n_classes, cfg)]
    return keras.Sequential(layers, name="small_cnn")


def run_scratch_small(data: CellData, spec: BackboneSpec | None, cfg: TrainConfig, engine: FeatureEngine) -> FitResult:
    _seed(cfg)
    key = ("scratch_small", data.image_size, data.n_classes, cfg.dropout, cfg.weight_decay)
    fresh = lambda: small_cnn(data.image_size, data.n_classes, cfg)  # noqa: E731
    return _train_from_scratch(key, fresh, data, spec, None, cfg, engine)


def probe_dense_weights(clf: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(kernel (features, n_classes), bias) of one softmax Dense layer that predicts as the fitted scikit-learn
    logistic regression ``clf``: a binary regression's one logit z becomes the pair (0, z), whose softmax is its
    sigmoid, and a class absent from training gets bias -1e4, so it never wins. Both linear probes deploy this."""
    coef, icpt = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:
        coef, icpt = np.vstack([np.zeros_like(coef), coef]), np.array([0.0, icpt[0]])
    kernel = np.zeros((coef.shape[1], n_classes), dtype="float32")
    bias = np.full(n_classes, -1e4, dtype="float32")
    kernel[:, clf.classes_], bias[clf.classes_] = coef.T, icpt
    return kernel, bias


def run_linear_probe(data: CellData, spec: BackboneSpec, cfg: TrainConfig, engine: FeatureEngine) -> FitResult:
    """Multinomial logistic regression on the raw pooled features; one Dense layer to deploy.

    Raw, not standardised: standardising gives every low-variance feature unit variance, and with few images the
    L2-regularised regression then fits noise. On the reference study's 320 image cells (5 backbones, seed 0) raw
    features scored 5.2 points higher at n = 50 (87 of 100 cells), 1.5 at 250, 1.0 at 1000 and 0.4 at 4000, and
    5-fold cross-validation on the training images alone preferred them too (``bench.linear_probe_recipe``).
    """
    import keras
    from sklearn.linear_model import LogisticRegression

    before = engine.cache.stats.extract_seconds
    ftr = engine.pooled(data, spec, "pool", data.train_idx)[0]
    fval = engine.pooled(data, spec, "pool", data.val_idx)[0]
    ftest = engine.pooled(data, spec, "test", data.test_idx)[0]
    t0 = time.perf_counter()
    clf = LogisticRegression(C=cfg.linear_c, max_iter=2000, random_state=cfg.seed)
    with warnings.catch_warnings():  # few images per class (n = 50, 21 classes) is the point, not a regression
        warnings.filterwarnings("ignore", message="The number of unique classes", category=UserWarning)
        clf.fit(ftr, data.y_train)
    train_seconds = time.perf_counter() - t0

    def proba(f: np.ndarray) -> np.ndarray:
        out = np.zeros((len(f), data.n_classes))
        out[:, clf.classes_] = clf.predict_proba(f)
        return out

    def build() -> Any:
        dense = keras.layers.Dense(data.n_classes, activation="softmax")
        dense.build((None, ftr.shape[1]))
        dense.set_weights(list(probe_dense_weights(clf, data.n_classes)))
        head = keras.Sequential([dense], name="head")
        backbone = _frozen(build_backbone(spec, data.image_size, dirs=engine.weights))
        return deployable(spec, backbone, head, data.image_size)

    return _finish(
        data,
        spec,
        engine,
        before,
        lambda: proba(fval),
        lambda: proba(ftest),
        [],
        train_seconds,
        int(clf.coef_.size + clf.intercept_.size),
        build,
        {"views": 1, "freeze_point": POOLED, "n_iter": int(np.max(clf.n_iter_))},
    )


_HEAD = ("lr_head", "dropout", "weight_decay")
_SMALL_SIMILAR, _SMALL_DIFFERENT, _LARGE_SIMILAR, _LARGE_DIFFERENT = (
    "small/similar", "small/different", "large/similar", "large/different")  # fmt: skip

for _s in (
    Strategy(
        name="scratch",
        run=run_scratch,
        recipe="The backbone's architecture, randomly initialised, every layer trained (BatchNorm in training mode, "
        "momentum 0.9) with Adam at lr_head: the from-scratch baseline of the same capacity.",
        pretrained=False,
        baseline=True,
        cached=False,
        params=_HEAD,
        freeze_level=0,
        freeze_text="nothing pretrained: train the backbone's architecture from random initialisation",
        seconds_per_image_epoch=0.029,
        fixed_seconds=6.0,
        label="from scratch (backbone architecture)",
        abbreviation="SCR",
        colour="#4d4d4d",
        order=0,
        curve_example=2,
        textbook=((_LARGE_DIFFERENT, 2),),
    ),
    Strategy(
        name="scratch_small",
        run=run_scratch_small,
        recipe="A 4-block CNN (32-64-128-128 filters, no BatchNorm) trained from scratch: the strong baseline on far "
        "domains and small images. Independent of the backbone.",
        pretrained=False,
        baseline=True,
        uses_backbone=False,
        cached=False,
        params=_HEAD,
        freeze_level=0,
        freeze_text="nothing pretrained: train the small 4-block CNN from random initialisation",
        seconds_per_image_epoch=0.0075,
        fixed_seconds=2.0,
        label="small CNN from scratch",
        abbreviation="CNN",
        colour="#bababa",
        order=1,
        curve_example=4,
        textbook=((_LARGE_DIFFERENT, 3),),
    ),
    Strategy(
        name="linear_probe",
        run=run_linear_probe,
        recipe="Cached pooled features as they are (not standardised) + scikit-learn multinomial logistic regression "
        "(C tuned): the cheapest transfer baseline.",
        pretrained=True,
        params=("linear_c",),
        freeze_level=3,
        freeze_text="freeze the whole backbone; fit a logistic regression on its pooled features",
        seconds_per_image_epoch=0.0001,
        fixed_seconds=1.0,
        label="linear probe",
        abbreviation="LP",
        colour="#009e73",
        order=2,
        textbook=((_SMALL_SIMILAR, 1),),
    ),
    Strategy(
        name="feature_extraction",
        run=run_feature_extraction,
        recipe="Frozen ImageNet backbone, global average pooling, new head (dropout + dense softmax) trained with Adam "
        "at lr_head on cached pooled features (TF transfer-learning tutorial, phase 1).",
        pretrained=True,
        params=_HEAD,
        freeze_level=3,
        freeze_text="freeze the whole backbone; train only the new head",
        seconds_per_image_epoch=0.0001,
        fixed_seconds=1.0,
        label="feature extraction",
        abbreviation="FE",
        colour="#0072b2",
        order=3,
        curve_example=3,
        textbook=((_SMALL_SIMILAR, 0), (_SMALL_DIFFERENT, 1), (_LARGE_SIMILAR, 2)),
    ),
    Strategy(
        name="fine_tune_top",
        run=run_fine_tune_top,
        recipe="Head-only phase as feature_extraction, then the top k blocks (backbone default unless tuned) and the "
        "head trained at lr_finetune on cached activations at the freeze point; BatchNorm layers stay frozen "
        "(TF tutorial phase 2, fine_tune_at; Keras fine-tuning guide).",
        pretrained=True,
        params=(*_HEAD, "lr_finetune", "top_k"),
        freeze_level=2,
        freeze_text="freeze all but the top {top_k} blocks (BatchNorm always frozen); head first, then those blocks",
        seconds_per_image_epoch=0.0024,
        fixed_seconds=5.0,
        label="fine-tune top blocks",
        abbreviation="FT-top",
        colour="#d55e00",
        order=4,
        curve_example=0,
        textbook=((_SMALL_SIMILAR, 2), (_SMALL_DIFFERENT, 0), (_LARGE_SIMILAR, 0), (_LARGE_DIFFERENT, 1)),
    ),
    Strategy(
        name="full_fine_tune",
        run=run_full_fine_tune,
        recipe="Head-only phase as feature_extraction, then every layer but BatchNorm trained at lr_finetune on images "
        "(Keras guide: unfreeze the whole base after the head has converged, keep BatchNorm frozen).",
        pretrained=True,
        cached=False,
        params=(*_HEAD, "lr_finetune"),
        freeze_level=1,
        freeze_text="head first, then unfreeze every layer except BatchNorm",
        seconds_per_image_epoch=0.0135,
        fixed_seconds=8.0,
        label="fine-tune everything",
        abbreviation="FT-all",
        colour="#cc79a7",
        order=5,
        curve_example=1,
        textbook=((_SMALL_DIFFERENT, 2), (_LARGE_SIMILAR, 1), (_LARGE_DIFFERENT, 0)),
    ),
):
    register_strategy(_s)
