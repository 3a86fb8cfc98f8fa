"""Benchmark: each image-level strategy's training speed against this machine's compute limit.

    python -m bench.bench_compute [--threads 1] [--image-size 64] [--n 1000] [--epochs 3]

``--threads`` is the TensorFlow thread count of one worker (``make study`` runs 2 workers on 2 cores: 1 each).
The limit: the machine's measured convolution throughput (a 3x3, 128 -> 128 channel convolution on a batch of
64 32x32 maps, forward, the best of several calls; a 2048x2048 matmul is printed beside it) divided by the
training FLOPs per image, taken as 3x the forward FLOPs (backward ~ 2x forward) counted by TensorFlow's profiler on
the very model the strategy trains (the pooled model of ``study.train.pool``: for ``fine_tune_top`` only the top
blocks, on cached activations). Measured: the strategy's own fine-tuning (or from-scratch) phase on a real cell
(cats_and_dogs_filtered, ``--n`` images, 80/20 train/validation), run once to warm up (build, trace), then timed;
a validation image counts as 1/3 of a training image (forward only). ``ratio`` = limit / measured images per second.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

STRATEGIES = ("scratch_small", "scratch", "fine_tune_top", "full_fine_tune")


def machine_gflops() -> tuple[float, float]:
    """(conv, matmul) GFLOP/s: the best of 5 timed calls after a warm-up, float32."""
    import tensorflow as tf

    x = tf.random.normal([64, 32, 32, 128])
    w = tf.random.normal([3, 3, 128, 128])
    a = tf.random.normal([2048, 2048])
    conv = tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME"))
    mm = tf.function(lambda a: tf.matmul(a, a))

    def best(fn: Any, flops: float) -> float:
        fn().numpy()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            fn().numpy()
            times.append(time.perf_counter() - t0)
        return flops / min(times) / 1e9

    return best(lambda: conv(x, w), 2 * 64 * 32 * 32 * 128 * 128 * 9), best(lambda: mm(a), 2 * 2048**3)


def forward_flops(model: Any) -> float:
    """Forward FLOPs of one example through ``model`` (TensorFlow's profiler on the frozen graph)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)

    @tf.autograph.experimental.do_not_convert
    def forward(x: Any) -> Any:
        return model(x, training=False)

    graph = convert_variables_to_constants_v2(tf.function(forward).get_concrete_function(spec)).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return float(tf.compat.v1.profiler.profile(graph=graph, options=opts).total_float_ops)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.bench_compute", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3)
    args = p.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import study.train.strategies as strategies
    from study import config
    from study.cache.features import FeatureEngine
    from study.data.catalog import load
    from study.data.cell_data import CellData
    from study.data.sampling import cap_test, train_val_split
    from study.train import pool
    from study.train.training import TrainConfig
    from study.zoo.backbones import get_backbone

    conv, mm = machine_gflops()
    print(f"machine, {args.threads} thread(s): conv {conv:.1f} GFLOP/s, matmul {mm:.1f} GFLOP/s")
    ds = load("cats_and_dogs_filtered", args.image_size, config.data_dirs(), config.cache_dir())
    tr, va = train_val_split(ds.pool.labels, args.n, 0)
    data = CellData(ds.name, ds.domain, list(ds.class_names), ds.source_checksum, args.image_size, ds.pool, ds.test,
                    tr, va, cap_test(ds.test.labels, 100, seed=0))  # fmt: skip
    spec = get_backbone("mobilenet_v2")
    timed: list[tuple[float, int]] = []
    original_fit = strategies.fit

    def fit(model: Any, *a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        curves = original_fit(model, *a, **k)
        timed.append((time.perf_counter() - t0, len(curves)))
        return curves

    strategies.fit = fit
    cfg = TrainConfig(epochs=args.epochs, patience=args.epochs, seed=0)
    print("| strategy | forward MFLOP/image | measured images/s | limit images/s | achieved GFLOP/s | ratio |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        engine = FeatureEngine(Path(tmp), config.weights_dirs())
        for name in STRATEGIES:
            run = strategies.get_strategy(name).run
            pool.clear()
            run(data, spec, cfg, engine)  # warm-up: build, trace, extract
            timed.clear()
            run(data, spec, cfg, engine)
            seconds, epochs = timed[-1]
            model = next(iter(pool._POOL.values())).model
            f = forward_flops(model)
            images = epochs * (len(tr) + len(va) / 3)
            measured = images / seconds
            limit = conv * 1e9 / (3 * f)
            print(f"| {name} | {f / 1e6:.0f} | {measured:.0f} | {limit:.0f} | {measured * 3 * f / 1e9:.1f} | "
                  f"{limit / measured:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
