"""Domain adaptation: strategies for a (source, target) cell, registered as ordinary strategy records.

A pair cell (``Cell.source`` set; ``CellData.source`` nested in the target's data) has labelled source images,
``n_target_labels`` (N_t) labelled target images, unlabelled target images from the target's *training pool*, and is
scored on the target's test split. Four recipes share one network and one training loop, so they differ only in what
they train on:

- ``source_only``: the label loss on labelled source images;
- ``dann``: DANN (Ganin & Lempitsky 2015, JMLR 2016): the same plus a domain classifier behind a gradient-reversal
  layer, trained to tell source from unlabelled target; λ rises as 2/(1+exp(−10p))−1 and the learning rate anneals
  as μ0/(1+10p)^0.75 over training progress p ∈ [0, 1]; with N_t > 0 the labelled target images join the label
  loss (semi-supervised DANN);
- ``target_only``: the label loss on the N_t labelled target images alone (the ordinary transfer cell);
- ``source_then_target``: ``source_only``, then fine-tuning on the N_t labelled target images at μ0/10 for up to
  ``FINE_TUNE_STEPS`` steps, stopped early on their validation part.

Training is a fixed budget of SGD steps (``FeatureKind.steps_per_epoch`` per grid epoch), not passes over the source
set: a pair cell has hundreds of source images, and the paper trains for thousands of steps. Model selection never
reads target test labels: the checkpoint kept (``EVALS`` checks per run) is the one with the best source-validation
accuracy (target labels are only the user's N_t: ``target_only`` and the fine-tuning phase select on the target's
validation part of them). Every record comes in two networks (``FEATURE_KINDS``): on an ImageNet backbone's frozen
cached pooled features with a small trainable adapter (cheap on CPU), and the DANN paper's small MNIST CNN from scratch
on images (``*_cnn``, no backbone), the paper's reference for digits.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from study.cache.features import POOLED, FeatureEngine
from study.data.cell_data import CellData
from study.train.strategies import Strategy, _frozen, deployable, register_strategy
from study.train.training import FitResult, TrainConfig, count_params, report_epoch
from study.zoo.backbones import BackboneSpec, build_backbone

LR0 = 0.01  # μ0 of the paper's annealing (SGD, momentum 0.9)
ALPHA, BETA, GAMMA = 10.0, 0.75, 10.0  # μ_p = μ0 / (1 + α p)^β ; λ_p = 2 / (1 + exp(−γ p)) − 1
FINE_TUNE_LR_FACTOR = 0.1  # source_then_target's second phase starts at μ0 / 10
EVALS = 20  # selection checks per training run
FINE_TUNE_STEPS, FINE_TUNE_PATIENCE = 400, 5  # source_then_target's second phase: steps, checks without gain


def dann_lambda(p: float) -> float:
    """The paper's domain-loss weight at training progress ``p``: 0 at the start, → 1 at the end."""
    return float(2.0 / (1.0 + math.exp(-GAMMA * p)) - 1.0)


def dann_lr(p: float, lr0: float = LR0) -> float:
    """The paper's annealed learning rate μ0 / (1 + 10 p)^0.75."""
    return float(lr0 / (1.0 + ALPHA * p) ** BETA)


@functools.cache
def gradient_reversal_class() -> type:
    """The Keras layer class, built on first use (importing the strategy registry must not import TensorFlow)."""
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="study")
    class GradientReversal(keras.layers.Layer):
        """Identity forward; backward multiplies the incoming gradient by exactly −λ (``lam``, set during training)."""

        def __init__(self, lam: float = 1.0, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.lam = self.add_weight(
                shape=(), initializer=keras.initializers.Constant(lam), trainable=False, name="lam"
            )

        def call(self, x: Any) -> Any:
            lam = tf.cast(tf.convert_to_tensor(self.lam), x.dtype)

            @tf.custom_gradient
            def reverse(t: Any) -> Any:
                def grad(dy: Any) -> Any:
                    return -lam * dy

                return tf.identity(t), grad

            return reverse(x)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "lam": float(keras.ops.convert_to_numpy(self.lam))}

    return GradientReversal


def gradient_reversal(lam: float = 1.0, **kwargs: Any) -> Any:
    return gradient_reversal_class()(lam, **kwargs)


# ------------------------------------------------------------------------------------------------ the network


def feature_adapter(dim: int, units: int = 256) -> Any:
    """On frozen pooled backbone features: standardised input -> one trainable Dense layer (the adapter)."""
    import keras

    return keras.Sequential(
        [keras.Input(shape=(dim,)), keras.layers.Dense(units, activation="relu"), keras.layers.Dropout(0.2)],
        name="adapter",
    )


def mnist_cnn(image_size: int, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> Any:
    """The DANN paper's MNIST feature extractor: conv5x5(32)-pool-conv5x5(48)-pool, flattened. The paper's label
    predictor (fc100-fc100-softmax) and domain classifier (fc100-1) both read this output, so the gradient reversal
    sits right after the convolutions (``FeatureKind.classifier_layers`` = 2).

    Inputs are centred and scaled per channel (``mean``/``std`` in pixel units; the paper subtracts the pixel mean):
    uncentred [0, 1] inputs leave MNIST's black background and MNIST-M's textures on different sides of every ReLU.
    """
    import keras

    mean = np.zeros(3) if mean is None else np.asarray(mean, float)
    std = np.full(3, 255.0) if std is None else np.asarray(std, float)
    return keras.Sequential(
        [
            keras.Input(shape=(image_size, image_size, 3)),
            keras.layers.Normalization(mean=mean, variance=std**2),
            keras.layers.Conv2D(32, 5, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(48, 5, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
        ],
        name="features",
    )


@dataclass
class Network:
    """Feature extractor F, label classifier C (softmax) and domain classifier D behind the reversal layer."""

    features: Any
    classifier: Any
    domain: Any
    grl: Any

    @classmethod
    def build(cls, features: Any, n_classes: int, hidden: int = 100, classifier_layers: int = 1) -> Network:
        """C: ``classifier_layers`` hidden ReLU layers of ``hidden`` units, then softmax; D: one hidden layer."""
        import keras

        dim = features.output_shape[-1]
        layers = [keras.layers.Dense(hidden, activation="relu") for _ in range(classifier_layers)]
        classifier = keras.Sequential(
            [keras.Input(shape=(dim,)), *layers, keras.layers.Dense(n_classes, activation="softmax")], name="classifier"
        )
        grl = gradient_reversal(0.0, name="gradient_reversal")
        domain = keras.Sequential(
            [keras.Input(shape=(dim,)), grl, keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(1)],
            name="domain",
        )
        return cls(features, classifier, domain, grl)

    def predictor(self) -> Any:
        """F then C as one model: inputs in, class probabilities out."""
        import keras

        inp = keras.Input(shape=self.features.input_shape[1:])
        return keras.Model(inp, self.classifier(self.features(inp)), name="label_predictor")

    def label_weights(self) -> list[Any]:
        return self.features.trainable_weights + self.classifier.trainable_weights

    def all_weights(self) -> list[Any]:
        return self.label_weights() + self.domain.trainable_weights

    def snapshot(self) -> list[np.ndarray]:
        return [w.numpy() for w in self.features.weights + self.classifier.weights]

    def restore(self, values: list[np.ndarray]) -> None:
        for w, v in zip(self.features.weights + self.classifier.weights, values, strict=True):
            w.assign(v)

    def proba(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        out = [np.asarray(self.classifier(self.features(x[i : i + batch], training=False), training=False))
               for i in range(0, len(x), batch)]  # fmt: skip
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, self.classifier.output_shape[-1]))


@dataclass
class Inputs:
    """One pair cell's arrays (features or images): labelled source, unlabelled target, the N_t labelled target."""

    xs: np.ndarray
    ys: np.ndarray
    xs_val: np.ndarray
    ys_val: np.ndarray
    xt: np.ndarray  # unlabelled target (training pool only)
    xt_lab: np.ndarray  # labelled target, training part (may be empty)
    yt_lab: np.ndarray
    xt_val: np.ndarray  # labelled target, validation part (may be empty)
    yt_val: np.ndarray
    x_test: np.ndarray  # target test subset: only ever predicted


def _batches(n: int, size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless mini-batches of ``range(n)``: one shuffled pass after another (a small source set is revisited)."""
    while True:
        order = rng.permutation(n)
        for b in range(0, n, size):
            yield order[b : b + size]


def train(
    net: Network,
    x: np.ndarray,
    y: np.ndarray,
    select_x: np.ndarray,
    select_y: np.ndarray,
    *,
    steps: int,
    seed: int,
    batch_size: int = 32,
    lr0: float = LR0,
    target_x: np.ndarray | None = None,
    phase: str = "label",
    patience: int | None = None,
) -> list[dict[str, Any]]:
    """``steps`` SGD steps (momentum 0.9) on the label loss over (x, y); with ``target_x`` also DANN's domain loss.

    A fixed number of optimisation steps, not epochs: the paper trains for thousands of steps, and a pair cell's
    source set (hundreds of images) would otherwise give a few dozen. Each step draws a batch of labelled images
    and, for DANN, an equal batch of target images (with replacement) against that batch as the source side of the
    domain loss. Progress p runs from 0 to 1 over the steps: the learning rate follows μ0/(1+10p)^0.75 and
    λ = 2/(1+exp(−10p))−1 scales the reversed gradient. Accuracy on (``select_x``, ``select_y``) is measured
    ``EVALS`` times; the weights kept are those of the best checkpoint (ties: the later one). With ``patience``,
    training stops after that many checks without a strict improvement (early stopping).
    """
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    adversarial = target_x is not None and len(target_x) > 0
    steps = max(1, int(steps))
    every = max(1, steps // EVALS)
    opt = keras.optimizers.SGD(learning_rate=lr0, momentum=0.9, global_clipnorm=5.0)  # guards against divergence
    weights = net.all_weights() if adversarial else net.label_weights()
    opt.build(weights)
    ce = keras.losses.SparseCategoricalCrossentropy()
    bce = keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function(reduce_retracing=True)
    def step(xb: Any, yb: Any, xd: Any, dom: Any) -> Any:
        with tf.GradientTape() as tape:
            # DANN: one pass of F over [labelled batch; target batch]; C reads the first rows, D all of them
            f = net.features(xd if adversarial else xb, training=True)
            label_loss = ce(yb, net.classifier(f[: tf.shape(yb)[0]], training=True))
            loss = label_loss
            if adversarial:
                loss = loss + bce(dom, net.domain(f, training=True))
        opt.apply_gradients(zip(tape.gradient(loss, weights), weights, strict=True))
        return label_loss, loss - label_loss

    curves: list[dict[str, Any]] = []
    best, best_acc, best_i, since_best, losses = None, -1.0, 0, 0, []
    batches = _batches(len(x), batch_size, rng)
    for t in range(steps):
        p = t / max(1, steps - 1)
        opt.learning_rate = dann_lr(p, lr0)
        net.grl.lam.assign(dann_lambda(p))
        idx = next(batches)
        xb, yb = x[idx].astype(np.float32), y[idx].astype(np.int32)
        if adversarial:
            ti = rng.integers(0, len(target_x), len(idx))
            xd = np.concatenate([xb, target_x[ti].astype(np.float32)])
            dom = np.concatenate([np.zeros(len(idx)), np.ones(len(idx))]).astype(np.float32)[:, None]
        else:
            xd, dom = xb[:1], np.zeros((1, 1), np.float32)
        losses.append([float(v) for v in step(xb, yb, xd, dom)])
        if (t + 1) % every and t + 1 < steps:
            continue
        acc = float(np.mean(net.proba(select_x).argmax(axis=1) == select_y)) if len(select_y) else 0.0
        report_epoch(acc)
        since_best = 0 if acc > best_acc else since_best + 1
        if acc >= best_acc:  # ties go to the later checkpoint (for DANN, the more adapted one)
            best, best_acc, best_i = net.snapshot(), acc, len(curves)
        mean = np.mean(losses, axis=0)
        curves.append({"phase": phase, "epoch": len(curves) + 1, "step": t + 1, "loss": float(mean[0]),
                       "domain_loss": float(mean[1]), "val_accuracy": acc,
                       "lambda": dann_lambda(p) if adversarial else 0.0,
                       "best": False})  # fmt: skip
        losses = []
        if patience is not None and since_best >= patience:
            break
    if best is not None:
        net.restore(best)
        curves[best_i]["best"] = True
    return curves


# ------------------------------------------------------------------------------------------------ the recipes


def _source_only(net: Network, d: Inputs, cfg: TrainConfig, steps: int) -> list[dict[str, Any]]:
    return train(net, d.xs, d.ys, d.xs_val, d.ys_val, steps=steps, seed=cfg.seed, batch_size=cfg.batch_size,
                 phase="source")  # fmt: skip


def _dann(net: Network, d: Inputs, cfg: TrainConfig, steps: int) -> list[dict[str, Any]]:
    x, y = np.concatenate([d.xs, d.xt_lab]), np.concatenate([d.ys, d.yt_lab])  # N_t > 0: semi-supervised
    target = np.concatenate([d.xt, d.xt_lab])
    return train(net, x, y, d.xs_val, d.ys_val, steps=steps, seed=cfg.seed, batch_size=cfg.batch_size,
                 target_x=target, phase="dann")  # fmt: skip


def _target_only(net: Network, d: Inputs, cfg: TrainConfig, steps: int) -> list[dict[str, Any]]:
    return train(net, d.xt_lab, d.yt_lab, d.xt_val, d.yt_val, steps=steps, seed=cfg.seed,
                 batch_size=cfg.batch_size, phase="target")  # fmt: skip


def _source_then_target(net: Network, d: Inputs, cfg: TrainConfig, steps: int) -> list[dict[str, Any]]:
    """Fine-tuning: up to ``FINE_TUNE_STEPS`` at μ0/10, stopped early on the N_t's validation part."""
    curves = _source_only(net, d, cfg, steps)
    return curves + train(net, d.xt_lab, d.yt_lab, d.xt_val, d.yt_val, steps=FINE_TUNE_STEPS, seed=cfg.seed,
                          batch_size=cfg.batch_size, lr0=LR0 * FINE_TUNE_LR_FACTOR, phase="target",
                          patience=FINE_TUNE_PATIENCE)  # fmt: skip


Recipe = Callable[[Network, Inputs, TrainConfig, int], list[dict[str, Any]]]


@dataclass(frozen=True)
class FeatureKind:
    """How a pair cell's inputs are made and which feature extractor the network starts from."""

    suffix: str
    uses_backbone: bool
    inputs: Callable[[CellData, BackboneSpec | None, FeatureEngine], Inputs]
    extractor: Callable[[Inputs, CellData], Any]
    deploy: Callable[[Network, CellData, BackboneSpec | None, FeatureEngine, Inputs], Callable[[], Any]]
    recipe: str
    classifier_layers: int  # hidden layers of the label classifier C
    steps_per_epoch: int  # SGD steps per grid "epoch" (epochs=10: ten times this)
    seconds_per_step: float  # cost hint on 2 CPU cores (DANN; the other recipes are cheaper)


def _split_inputs(data: CellData, get: Callable[[CellData, str, np.ndarray], np.ndarray]) -> Inputs:
    src = data.source
    if src is None:
        from study.errors import StudyError

        raise StudyError(f"dataset {data.dataset!r}: a pair strategy needs a (source, target) cell; use pairs = [...]")
    return Inputs(
        get(src, "pool", src.train_idx), src.y_train, get(src, "pool", src.val_idx), src.y_val,
        get(data, "pool", data.unlabelled_idx), get(data, "pool", data.train_idx), data.y_train,
        get(data, "pool", data.val_idx), data.y_val, get(data, "test", data.test_idx),
    )  # fmt: skip


def _standardiser(xs: np.ndarray, xt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    both = np.concatenate([xs, xt]) if len(xt) else xs
    std = both.std(axis=0)
    return both.mean(axis=0), np.maximum(std, 0.1 * float(std.mean()) + 1e-6)


def _feature_inputs(data: CellData, spec: BackboneSpec | None, engine: FeatureEngine) -> Inputs:
    """Cached pooled features, standardised with the statistics of every training input (labelled source and the
    unlabelled target: no labels), a floor on the scale so near-constant source dimensions cannot blow up."""
    assert spec is not None

    def get(cell: CellData, split: str, idx: np.ndarray) -> np.ndarray:
        if len(idx) == 0:
            return np.zeros((0, 0), np.float32)
        return engine.pooled(cell, spec, split, idx)[0]

    d = _split_inputs(data, get)
    mean, std = _standardiser(d.xs, d.xt)
    dim = d.xs.shape[1]

    def z(a: np.ndarray) -> np.ndarray:
        return ((a - mean) / std).astype(np.float32) if a.size else np.zeros((0, dim), np.float32)

    return Inputs(z(d.xs), d.ys, z(d.xs_val), d.ys_val, z(d.xt), z(d.xt_lab), d.yt_lab, z(d.xt_val), d.yt_val,
                  z(d.x_test))  # fmt: skip


def _image_inputs(data: CellData, spec: BackboneSpec | None, engine: FeatureEngine) -> Inputs:
    def get(cell: CellData, split: str, idx: np.ndarray) -> np.ndarray:
        images = cell.pool.images if split == "pool" else cell.test.images
        return images[idx]

    return _split_inputs(data, get)


def _pixel_stats(d: Inputs) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel pixel mean and standard deviation of the training inputs: labelled source and unlabelled target
    (no labels read; a subsample is enough)."""
    both = np.concatenate([d.xs[:2000], d.xt[:2000]]).reshape(-1, 3).astype(np.float64)
    return both.mean(axis=0), np.maximum(both.std(axis=0), 1.0)


def _deploy_features(net: Network, data: CellData, spec: BackboneSpec | None, engine: FeatureEngine,
                     d: Inputs) -> Callable[[], Any]:  # fmt: skip
    """Images in, probabilities out: frozen backbone, pooling, the standardisation folded into the adapter's input."""
    assert spec is not None and data.source is not None
    raw = engine.pooled(data.source, spec, "pool", data.source.train_idx)[0]
    unlabelled = engine.pooled(data, spec, "pool", data.unlabelled_idx)[0] if len(data.unlabelled_idx) else raw[:0]
    mean, std = _standardiser(raw, unlabelled)

    def build() -> Any:
        import keras

        head = keras.Sequential([keras.Input(shape=(raw.shape[1],)), keras.layers.Normalization(mean=mean,
                                 variance=std**2), net.predictor()], name="head")  # fmt: skip
        backbone = _frozen(build_backbone(spec, data.image_size, dirs=engine.weights))
        return deployable(spec, backbone, head, data.image_size)

    return build


def _deploy_images(net: Network, data: CellData, spec: BackboneSpec | None, engine: FeatureEngine,
                   d: Inputs) -> Callable[[], Any]:  # fmt: skip
    return net.predictor


FEATURE_KINDS: tuple[FeatureKind, ...] = (
    FeatureKind(
        "", True, _feature_inputs, lambda d, data: feature_adapter(d.xs.shape[1]), _deploy_features,
        "on the backbone's frozen cached pooled features (standardised on source and unlabelled target) with a "
        "trainable Dense(256) adapter", 1, 200, 0.003,
    ),
    FeatureKind(
        "_cnn", False, _image_inputs, lambda d, data: mnist_cnn(data.image_size, *_pixel_stats(d)), _deploy_images,
        "the DANN paper's small MNIST CNN (conv32-conv48, then fc100-fc100 label and fc100 domain heads) from scratch "
        "on images", 2, 60, 0.03,
    ),
)  # fmt: skip


def make_run(recipe: Recipe, kind: FeatureKind) -> Callable[..., FitResult]:
    def run(data: CellData, spec: BackboneSpec | None, cfg: TrainConfig, engine: FeatureEngine) -> FitResult:
        import keras

        keras.utils.set_random_seed(cfg.seed)
        before = engine.cache.stats.extract_seconds
        d = kind.inputs(data, spec, engine)
        net = Network.build(kind.extractor(d, data), data.n_classes, classifier_layers=kind.classifier_layers)
        t0 = time.perf_counter()
        curves = recipe(net, d, cfg, cfg.epochs * kind.steps_per_epoch)
        train_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        val_proba, test_proba = net.proba(d.xs_val), net.proba(d.x_test)
        eval_seconds = time.perf_counter() - t1
        info = {
            "views": 1,
            "freeze_point": POOLED if kind.uses_backbone else None,
            "adaptation": {
                "source": data.source.dataset if data.source else None,
                "n_source_train": len(d.ys), "n_source_val": len(d.ys_val), "n_target_unlabelled": len(d.xt),
                "n_target_train": len(d.yt_lab), "n_target_val": len(d.yt_val), "lr0": LR0,
                "steps": cfg.epochs * kind.steps_per_epoch,
                "selection": "best source-validation accuracy (target_only / fine-tuning: the N_t's validation part)",
            },
        }  # fmt: skip
        return FitResult(
            val_proba=val_proba, test_proba=test_proba, curves=curves,
            timings={"extract_seconds": engine.cache.stats.extract_seconds - before, "train_seconds": train_seconds,
                     "eval_seconds": eval_seconds},
            trainable_params=count_params(net.predictor())[0], build_model=kind.deploy(net, data, spec, engine, d),
            info=info,
        )  # fmt: skip

    return run


_RECIPES: tuple[tuple[str, Recipe, bool, str, str, str], ...] = (
    ("source_only", _source_only, False, "source only", "SRC",
     "Label loss on the labelled source images only; evaluated on the target's test split"),
    ("dann", _dann, False, "DANN", "DANN",
     "DANN (Ganin & Lempitsky 2015): the source-only network plus a domain classifier behind a gradient-reversal "
     "layer, trained on labelled source and unlabelled target-pool images; λ = 2/(1+exp(−10p))−1, learning rate "
     "μ0/(1+10p)^0.75 (SGD, momentum 0.9, μ0 = 0.01); with N_t > 0 the labelled target images join the label loss "
     "(semi-supervised). Model selection: the checkpoint with the best source-validation accuracy, never target "
     "labels"),
    ("target_only", _target_only, True, "target only", "TGT",
     "The same network trained on the N_t labelled target images alone (selected on their validation part)"),
    ("source_then_target", _source_then_target, True, "source, then target", "S→T",
     "source_only, then fine-tuning on the N_t labelled target images at μ0/10 for up to 400 steps, stopped early "
     "and selected on their validation part"),
)  # fmt: skip

for _order, (_name, _recipe, _needs, _label, _abbr, _text) in enumerate(_RECIPES):
    for _kind in FEATURE_KINDS:
        register_strategy(
            Strategy(
                name=_name + _kind.suffix,
                run=make_run(_recipe, _kind),
                recipe=f"{_text}; {_kind.recipe}.",
                pretrained=_kind.uses_backbone,
                uses_backbone=_kind.uses_backbone,
                cached=_kind.uses_backbone,
                params=(),
                freeze_level=3 if _kind.uses_backbone else 0,
                freeze_text="freeze the whole backbone; train a small adapter and head on its pooled features"
                if _kind.uses_backbone
                else "nothing pretrained: train the small CNN from random initialisation",
                seconds_per_image_epoch=0.0,  # a fixed number of steps, whatever N: the cost is all fixed
                fixed_seconds=2.0 + 10 * _kind.steps_per_epoch * _kind.seconds_per_step,
                label=_label + (" (CNN)" if _kind.suffix else ""),
                abbreviation=_abbr + ("-CNN" if _kind.suffix else ""),
                order=20 + 2 * _order + (1 if _kind.suffix else 0),
                pair=True,
                needs_target_labels=_needs,
            )
        )
