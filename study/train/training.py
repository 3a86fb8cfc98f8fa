"""Training plumbing shared by every strategy: the data a cell trains on, the fit loop, metrics, costs.

Strategies (``study.train.strategies``) decide *what* is trained on *which* inputs; this module does the fitting the
same way for all of them, so differences in results come from the strategy, not from its plumbing:
``tf.data`` with shuffling and prefetch, Adam, early stopping on validation loss with the best weights
restored, per-epoch learning curves, and one metrics function.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn import metrics as skm

if TYPE_CHECKING:
    from study.data.cell_data import CellData  # noqa: F401


# Called by every training loop after each epoch with that epoch's validation accuracy; the tuner sets it to
# report to an Optuna trial (and prune). Outside tuning it is unset and costs nothing.
EPOCH_HOOK: contextvars.ContextVar[Callable[[float], None] | None] = contextvars.ContextVar("epoch_hook", default=None)


def report_epoch(val_accuracy: float) -> None:
    hook = EPOCH_HOOK.get()
    if hook is not None:
        hook(val_accuracy)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (what a tuning trial varies)."""

    epochs: int = 10  # per phase; early stopping may end a phase sooner
    batch_size: int = 32
    lr_head: float = 1e-3  # head-only phase / scratch training
    lr_finetune: float = 1e-4  # phase that updates pretrained weights
    weight_decay: float = 1e-4  # L2 on the new head's kernel
    dropout: float = 0.2
    top_k: int | None = None  # fine_tune_top: blocks to unfreeze (None = the backbone's default)
    patience: int = 3
    augment: bool = False
    augment_views: int = 4  # cached augmented views per image when augment=True (view 0 = original)
    linear_c: float = 1.0  # inverse regularisation of linear_probe
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitResult:
    """What a strategy hands back: predictions, curves and costs; the sweep turns it into a row."""

    val_proba: np.ndarray
    test_proba: np.ndarray
    curves: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    trainable_params: int = 0
    build_model: Any = None  # () -> deployable keras.Model (images in, probabilities out); built on demand
    export_model: Any = None  # () -> keras.Model on token ids (text strategies; advisor train), on demand
    info: dict[str, Any] = field(default_factory=dict)
    _model: Any = None

    def model(self) -> Any:
        """The deployable model, built once (tuning trials never need it, so it is not built eagerly)."""
        if self._model is None and self.build_model is not None:
            self._model = self.build_model()
        return self._model

    @property
    def total_params(self) -> int:
        model = self.model()
        return count_params(model)[1] if model is not None else self.trainable_params


def make_dataset(x: Any, y: np.ndarray, batch_size: int, shuffle: bool, seed: int, transform: Any = None) -> Any:
    """A ``tf.data`` pipeline over in-memory arrays: shuffle, optional per-batch transform, prefetch."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y.astype("int32")))
    if shuffle:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if transform is not None:
        ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


_FUSED_ADAM: Any = None


def fused_adam(lr: float) -> Any:
    """Keras' Adam with each variable's update done by TensorFlow's fused ``ResourceApplyAdam`` kernel.

    Same rule and defaults as ``keras.optimizers.Adam`` (m, v, bias-corrected step size, epsilon outside the
    square root), but one graph op per variable instead of about twenty: Keras builds its update from elementwise
    ops, so tracing MobileNetV2's train step creates thousands of optimiser ops, and a new architecture's first
    fit pays for them (``bench/README.md``, throughput). The results are not bit-identical to Keras' Adam (the
    kernel orders the arithmetic differently), which the throughput benchmark checks against seed noise.
    """
    global _FUSED_ADAM
    if _FUSED_ADAM is None:
        import keras
        import tensorflow as tf

        class FusedAdam(keras.optimizers.Adam):
            def _backend_update_step(self, grads: Any, trainable_variables: Any, learning_rate: Any) -> None:
                step = tf.cast(self.iterations + 1, tf.float32)
                beta_1 = tf.constant(self.beta_1, tf.float32)
                beta_2 = tf.constant(self.beta_2, tf.float32)
                beta_1_power, beta_2_power = tf.pow(beta_1, step), tf.pow(beta_2, step)
                lr_t = tf.cast(learning_rate, tf.float32)
                epsilon = tf.constant(self.epsilon, tf.float32)
                for grad, variable in zip(grads, trainable_variables, strict=True):
                    i = self._get_variable_index(variable)
                    tf.raw_ops.ResourceApplyAdam(
                        var=variable.value.handle,
                        m=self._momentums[i].value.handle,
                        v=self._velocities[i].value.handle,
                        beta1_power=beta_1_power,
                        beta2_power=beta_2_power,
                        lr=lr_t,
                        beta1=beta_1,
                        beta2=beta_2,
                        epsilon=epsilon,
                        grad=tf.cast(grad, tf.float32),
                    )

        _FUSED_ADAM = FusedAdam
    return _FUSED_ADAM(learning_rate=lr)


def compile_classifier(model: Any, lr: float) -> Any:
    """Compile for ``fit``: Adam at ``lr`` (``fused_adam``), sparse categorical cross-entropy, accuracy (every
    strategy alike)."""
    model.compile(optimizer=fused_adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(
    model: Any,
    train_ds: Any,
    val_ds: Any,
    epochs: int,
    patience: int,
    phase: str,
) -> list[dict[str, Any]]:
    """Fit a model compiled by ``compile_classifier`` (directly or through ``study.train.pool.compiled``) with early
    stopping on val loss (best weights restored); return per-epoch curves."""
    import keras

    stop = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True, start_from_epoch=0
    )
    hook = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: report_epoch(float(logs["val_accuracy"])))
    hist = model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=[stop, hook], verbose=0, shuffle=False)
    h = hist.history
    best = int(np.argmin(h["val_loss"]))
    return [
        {
            "phase": phase,
            "epoch": i + 1,
            "loss": float(h["loss"][i]),
            "accuracy": float(h["accuracy"][i]),
            "val_loss": float(h["val_loss"][i]),
            "val_accuracy": float(h["val_accuracy"][i]),
            "best": i == best,
        }
        for i in range(len(h["loss"]))
    ]


def predict_proba(model: Any, x: Any, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for in-memory inputs, batched, inference mode."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(x).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return np.asarray(model.predict(ds, verbose=0), dtype=np.float64)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, Any]:
    """``study.quality.prediction_summary`` plus the probability-based metrics: macro-F1, ROC-AUC, log loss.

    Also the degenerate flag (``study.quality.is_degenerate``), so a collapsed model is labelled at the source.
    """
    from study.quality import degenerate_rule, prediction_summary

    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    labels = list(range(n_classes))
    out = prediction_summary(y_true, pred, n_classes)
    try:
        if n_classes == 2:
            auc = float(skm.roc_auc_score(y_true, proba[:, 1])) if np.unique(y_true).size == 2 else float("nan")
        else:
            auc = float(skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels))
    except ValueError:
        auc = float("nan")
    out.update(
        macro_f1=float(skm.f1_score(y_true, pred, average="macro", labels=labels, zero_division=0)),
        roc_auc=auc,
        log_loss=float(skm.log_loss(y_true, proba, labels=labels)),
        predicted_classes=int(np.unique(pred).size),
    )
    out["degenerate"] = bool(
        degenerate_rule(
            out["accuracy"], out["majority_share"], out["balanced_accuracy"], n_classes, out["top_prediction_share"],
            roc_auc=out["roc_auc"],
        )
    )
    return out


_LATENCY: dict[tuple, float] = {}


def cpu_latency_ms(model: Any, image_size: int, key: tuple, runs: int = 20) -> float:
    """Median wall time of one single-image forward pass (memoised per architecture: weights don't matter)."""
    if key in _LATENCY:
        return _LATENCY[key]
    import tensorflow as tf

    x = tf.constant(np.zeros((1, image_size, image_size, 3), dtype=np.float32))
    call = tf.function(lambda t: model(t, training=False))
    for _ in range(3):
        call(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call(x).numpy()
        times.append(time.perf_counter() - t0)
    _LATENCY[key] = float(np.median(times) * 1000)
    return _LATENCY[key]


def count_params(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts of a Keras model."""
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(sum(np.prod(w.shape) for w in model.weights))
    return trainable, total
