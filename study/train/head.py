"""Fast training of the classification head on cached features.

The head every pretrained strategy adds is dropout followed by a dense softmax layer with L2 on its kernel.
On cached features that is a tiny model, and Keras' ``fit`` spends ~1 s per call on fixed overhead (tracing,
callbacks, per-epoch iterators) against ~0.05 s of arithmetic; a tuning sweep calls it hundreds of times.
Here one ``tf.function`` (traced once per process: every shape is dynamic) runs a whole epoch, and the loop
around it applies the same recipe as ``study.train.training.fit``: Adam with Keras' defaults, Glorot-uniform init,
mini-batches reshuffled every epoch, one cached augmented view drawn per example and epoch, early stopping on
validation loss with the best weights restored. The weights are then copied into an ordinary Keras head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from study.train.training import TrainConfig, report_epoch

BETA1, BETA2, EPS = 0.9, 0.999, 1e-7  # keras.optimizers.Adam defaults

_EPOCH_FN: Any = None


@dataclass
class HeadWeights:
    kernel: np.ndarray  # (d, n_classes)
    bias: np.ndarray  # (n_classes,)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = x.astype(np.float64) @ self.kernel + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def to_keras(self, cfg: TrainConfig, name: str = "head") -> Any:
        """An ordinary Keras head (Dropout -> Dense softmax, L2) holding these weights (dropout seeded by the cell's
        seed, as ``study.train.strategies._head``)."""
        import keras

        head = keras.Sequential(
            [
                keras.layers.Dropout(cfg.dropout, seed=cfg.seed),
                keras.layers.Dense(
                    self.kernel.shape[1],
                    activation="softmax",
                    kernel_regularizer=keras.regularizers.L2(cfg.weight_decay),
                ),
            ],
            name=name,
        )
        head.build((None, self.kernel.shape[0]))
        head.set_weights([self.kernel.astype("float32"), self.bias.astype("float32")])
        return head


def _epoch_fn() -> Any:
    """The traced epoch: (state, data, hyper-parameters) -> (new state, train and validation metrics)."""
    global _EPOCH_FN
    if _EPOCH_FN is not None:
        return _EPOCH_FN
    import tensorflow as tf

    def loss_of(w: Any, b: Any, x: Any, y: Any, wd: Any) -> tuple[Any, Any]:
        logits = tf.matmul(x, w) + b
        ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.float32))
        return ce + wd * tf.reduce_sum(tf.square(w)), acc

    @tf.function(reduce_retracing=True)
    def epoch(w, b, mw, vw, mb, vb, t, x, y, xv, yv, lr, rate, wd, batch, seed):  # type: ignore[no-untyped-def]
        n = tf.shape(y)[0]
        views = tf.shape(x)[0]
        perm = tf.random.experimental.stateless_shuffle(tf.range(n), seed=seed)
        view_of = tf.random.stateless_uniform([n], seed=seed + 1, maxval=views, dtype=tf.int32)
        n_batches = (n + batch - 1) // batch

        def step(i, w, b, mw, vw, mb, vb, t, loss_sum, acc_sum):  # type: ignore[no-untyped-def]
            idx = perm[i * batch : tf.minimum((i + 1) * batch, n)]
            xb = tf.gather_nd(x, tf.stack([tf.gather(view_of, idx), idx], axis=1))
            yb = tf.gather(y, idx)
            xb = tf.nn.experimental.stateless_dropout(xb, rate=rate, seed=seed + 2 + i)
            with tf.GradientTape() as tape:
                tape.watch([w, b])
                loss, acc = loss_of(w, b, xb, yb, wd)
            gw, gb = tape.gradient(loss, [w, b])
            t = t + 1.0
            alpha = lr * tf.sqrt(1 - BETA2**t) / (1 - BETA1**t)
            mw = BETA1 * mw + (1 - BETA1) * gw
            vw = BETA2 * vw + (1 - BETA2) * tf.square(gw)
            mb = BETA1 * mb + (1 - BETA1) * gb
            vb = BETA2 * vb + (1 - BETA2) * tf.square(gb)
            w = w - alpha * mw / (tf.sqrt(vw) + EPS)
            b = b - alpha * mb / (tf.sqrt(vb) + EPS)
            return i + 1, w, b, mw, vw, mb, vb, t, loss_sum + loss, acc_sum + acc

        zero = tf.constant(0.0)
        _, w, b, mw, vw, mb, vb, t, loss_sum, acc_sum = tf.while_loop(
            lambda i, *_: i < n_batches, step, [0, w, b, mw, vw, mb, vb, t, zero, zero]
        )
        n_b = tf.cast(n_batches, tf.float32)
        val_loss, val_acc = loss_of(w, b, xv, yv, wd)
        return w, b, mw, vw, mb, vb, t, loss_sum / n_b, acc_sum / n_b, val_loss, val_acc

    _EPOCH_FN = epoch
    return epoch


def train_head(
    x_views: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    cfg: TrainConfig,
    phase: str = "head",
    zero_init: bool = False,
) -> tuple[HeadWeights, list[dict[str, Any]]]:
    """Train dropout + dense softmax on features ``x_views`` (views, n, d); returns best weights and curves.

    ``zero_init`` starts the kernel at zero (logistic regression's start) instead of Glorot-uniform: the first
    steps then move every logit towards the classes' means instead of first undoing random logits.
    """
    import tensorflow as tf

    d = x_views.shape[-1]
    rng = np.random.default_rng(cfg.seed)
    limit = np.sqrt(6.0 / (d + n_classes))  # Glorot uniform, as keras.layers.Dense
    state = [
        tf.constant(np.zeros((d, n_classes)) if zero_init else rng.uniform(-limit, limit, (d, n_classes)), tf.float32),
        tf.zeros([n_classes]),
        tf.zeros([d, n_classes]),
        tf.zeros([d, n_classes]),
        tf.zeros([n_classes]),
        tf.zeros([n_classes]),
        tf.constant(0.0),
    ]
    data = [
        tf.constant(x_views, tf.float32),
        tf.constant(y, tf.int32),
        tf.constant(x_val, tf.float32),
        tf.constant(y_val, tf.int32),
    ]
    hyper = [
        tf.constant(cfg.lr_head, tf.float32),
        tf.constant(cfg.dropout, tf.float32),
        tf.constant(cfg.weight_decay, tf.float32),
        tf.constant(cfg.batch_size, tf.int32),
    ]
    epoch = _epoch_fn()
    best, best_loss, waited, curves = None, np.inf, 0, []
    for e in range(cfg.epochs):
        seed = tf.constant([cfg.seed, 1000 * e], tf.int32)
        *state, loss, acc, val_loss, val_acc = epoch(*state, *data, *hyper, seed)
        curves.append(
            {
                "phase": phase,
                "epoch": e + 1,
                "loss": float(loss),
                "accuracy": float(acc),
                "val_loss": float(val_loss),
                "val_accuracy": float(val_acc),
                "best": False,
            }
        )
        report_epoch(float(val_acc))
        if float(val_loss) < best_loss:
            best_loss, best, waited = float(val_loss), (state[0].numpy(), state[1].numpy()), 0
            best_epoch = e
        else:
            waited += 1
            if waited >= cfg.patience:
                break
    curves[best_epoch]["best"] = True
    return HeadWeights(best[0].astype(np.float64), best[1].astype(np.float64)), curves
