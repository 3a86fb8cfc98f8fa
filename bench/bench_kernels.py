"""Benchmark: the two training-kernel changes of issue 17, each beside what it replaced, in one run.

    python -m bench.bench_kernels [--threads 1] [--image-size 64] [--n 800] [--repeats 20]

1. **1x1 convolutions as matrix products** (``study.train.pointwise``): forward + backward of one pointwise
   convolution at MobileNetV2's shapes at 64 px (batch 32), as ``keras.layers.Conv2D`` and as ``PointwiseConv2D``
   with the same kernel; the median of ``--repeats`` timed calls after a warm-up.
2. **Whole trainings**: MobileNetV2 at ``--image-size`` (random initial weights: the speed does not depend on them)
   trained as ``full_fine_tune`` trains it, and its top blocks (``fine_tune_top``'s default cut, on activations of
   the right shape) as ``fine_tune_top`` trains them, on ``--n`` random images, batch 32, in the four combinations
   {Conv2D, PointwiseConv2D} x {``keras.optimizers.Adam``, ``study.train.training.fused_adam``}. Per combination:
   the first epoch (tracing included: what a new architecture pays once per worker) and the median of four more
   epochs (the steady state), each on a freshly built model so nothing is shared between combinations.

``--threads`` is TensorFlow's thread count (``make study`` runs 2 workers on 2 cores: 1 thread each).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# (map side, input channels, output channels): MobileNetV2's pointwise convolutions at 64 px, top blocks first
POINTWISE_SHAPES = ((2, 320, 1280), (2, 960, 160), (2, 160, 960), (4, 576, 96), (4, 96, 576), (4, 384, 64),
                    (8, 192, 32), (16, 144, 24), (32, 32, 16))
BATCH = 32


def time_pointwise(side: int, c_in: int, c_out: int, repeats: int) -> tuple[float, float]:
    """(Conv2D ms, PointwiseConv2D ms): median forward + backward time of one batch."""
    import keras
    import tensorflow as tf

    from study.train.pointwise import pointwise_conv2d

    x = tf.random.stateless_normal((BATCH, side, side, c_in), seed=(1, 2))
    times = []
    for cls in (keras.layers.Conv2D, pointwise_conv2d()):
        layer = cls(c_out, 1, use_bias=False)
        layer.build(x.shape)
        layer.kernel.assign(tf.random.stateless_normal(layer.kernel.shape, seed=(3, 4)) * 0.05)

        @tf.function
        def step(x: Any, layer: Any = layer) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(layer(x) ** 2)
            return tape.gradient(loss, [x, layer.kernel])

        step(x)
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            [g.numpy() for g in step(x)]
            samples.append(time.perf_counter() - t0)
        times.append(1000 * statistics.median(samples))
    return times[0], times[1]


def _models(image_size: int, n_classes: int, matmul: bool) -> dict[str, tuple[Any, tuple[int, ...]]]:
    """{"full_fine_tune": (model, input shape), "fine_tune_top": (model, input shape)}, freshly built."""
    import keras

    from study.train.pointwise import pointwise_as_matmul
    from study.train.strategies import _classifier, unfreeze
    from study.zoo.backbones import build_backbone, get_backbone, split_at

    spec = get_backbone("mobilenet_v2")
    out = {}
    for name in ("full_fine_tune", "fine_tune_top"):
        keras.utils.set_random_seed(0)
        backbone = build_backbone(spec, image_size, weights=None)
        if matmul:
            backbone = pointwise_as_matmul(backbone)
        if name == "fine_tune_top":
            prefix, body = split_at(backbone, spec.freeze_point(spec.default_top_k))
            shape = tuple(prefix.output.shape[1:])
        else:
            body, shape = backbone, (image_size, image_size, 3)
        unfreeze(body)
        head = keras.layers.Dense(n_classes, activation="softmax")
        out[name] = (_classifier(body, head, keras.Input(shape=shape)), shape)  # the strategies' own wiring
    return out


def time_training(image_size: int, n: int, matmul: bool, fused: bool) -> dict[str, tuple[float, float]]:
    """{strategy: (first epoch s, steady epoch s)} for one {kernel} x {optimiser} combination."""
    import keras
    import numpy as np

    from study.train.training import fused_adam

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    result = {}
    for name, (model, shape) in _models(image_size, 2, matmul).items():
        x = rng.standard_normal((n, *shape), dtype=np.float32)
        optimizer = fused_adam(1e-4) if fused else keras.optimizers.Adam(1e-4)
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        epochs = []
        for _ in range(5):
            t0 = time.perf_counter()
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
            epochs.append(time.perf_counter() - t0)
        result[name] = (epochs[0], statistics.median(epochs[1:]))
        keras.backend.clear_session()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--n", type=int, default=800, help="training images per epoch")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per pointwise shape")
    args = parser.parse_args(argv)

    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one tf.function per layer compared is the point, not a retracing problem
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    print(f"1x1 convolution, forward + backward, batch {BATCH}, {args.threads} thread(s), median of {args.repeats}")
    print("| map x channels in -> out | Conv2D ms | PointwiseConv2D ms | ratio |")
    print("|---|---|---|---|")
    for side, c_in, c_out in POINTWISE_SHAPES:
        conv, mm = time_pointwise(side, c_in, c_out, args.repeats)
        print(f"| {side}x{side}x{c_in} -> {c_out} | {conv:.1f} | {mm:.1f} | {conv / mm:.2f}x |", flush=True)

    print(f"\nMobileNetV2 at {args.image_size} px, {args.n} images per epoch, batch {BATCH}: first epoch (tracing "
          "included) / steady epoch, seconds")  # fmt: skip
    print("| strategy | convolution | optimiser | first epoch s | steady epoch s |")
    print("|---|---|---|---|---|")
    rows = {}
    for matmul in (False, True):
        for fused in (False, True):
            for name, (first, steady) in time_training(args.image_size, args.n, matmul, fused).items():
                rows[name, matmul, fused] = (first, steady)
                conv = "PointwiseConv2D" if matmul else "Conv2D"
                optimiser = "fused_adam" if fused else "keras Adam"
                print(f"| {name} | {conv} | {optimiser} | {first:.2f} | {steady:.2f} |", flush=True)
    for name in ("full_fine_tune", "fine_tune_top"):
        before, after = rows[name, False, False], rows[name, True, True]
        print(f"{name}: first epoch {before[0] / after[0]:.2f}x, steady epoch {before[1] / after[1]:.2f}x "
              "(Conv2D + keras Adam -> PointwiseConv2D + fused_adam)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
