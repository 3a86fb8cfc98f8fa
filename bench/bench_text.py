"""Benchmark: frozen sentence embeddings with dynamic padding + length bucketing vs naive fixed-length padding.

    python -m bench.bench_text [--dataset ag_news] [--n 512] [--max-length 128] [--batch-size 32]
                               [--batch-sizes 16,32,64] [--threads 0] [--repeats 1]

Every side embeds the same ``--n`` real texts (a fixed random sample, seed 0, of the dataset's ``train.csv`` in
``$TRANSFER_STUDY_DATA/text``, default ``../shared/datapack``) with the same all-MiniLM-L6-v2 Keras encoder
(``study.zoo.text``) and the same tokenizer truncating at ``--max-length`` tokens, in one process:

- naive           texts in their original order, every batch padded to ``--max-length`` (the shipped
                  tokenizer.json's own setting: padding and truncation at 128), ``--batch-size`` texts a batch,
                  ``predict_on_batch`` (as most tutorials do);
- dynamic-predict texts sorted by token length, each batch padded to its own longest text, ``predict_on_batch``
                  (the study's first recipe: a new batch length may trace a new graph);
- dynamic-B       the study's recipe (``study.zoo.text.embed``): length buckets of B texts (each of
                  ``--batch-sizes``), each padded to its own longest text, one graph traced once for any shape.

Timed: tokenisation + padding + the encoder, after one untimed warm-up pass of each side over the first 64 texts.
With ``--repeats R`` each side runs R times alternately and its fastest run counts. ``--threads T`` sets TensorFlow's
intra- and inter-op threads (0: TensorFlow's default, one per core). Printed: the load average before and after (the
machine is shared: figures from a busy machine are not comparable), the token statistics, the token slots each
side computes, the largest embedding difference from the naive side (they must agree: padding is masked), texts/s
of each side and, last, ``speedup N.NNx`` (the best dynamic side over naive).

Measured (2 shared CPU cores, other engineers' jobs running; --repeats 3): ag_news, 512 texts (mean 52 tokens),
load 3.4: naive 71 texts/s, dynamic-32 221 texts/s (3.1x; 43 % of the token slots); medical_abstracts, 256 texts
that fill the 128 tokens (mean 125), load 3.2: naive 114, dynamic-32 112 texts/s (no padding to save). Buckets of 64
and 128 texts were slower per token than 32; --threads 1/2/4 and XLA (jit_compile) did not beat the default.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from collections.abc import Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load_texts(dataset: str, n: int) -> list[str]:
    from study import config
    from study.errors import StudyError

    for root in config.data_dirs():
        path = root / "text" / dataset / "train.csv"
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as f:
                texts = [row["text"] for row in csv.DictReader(f)]
            if n > len(texts):
                raise StudyError(f"--n {n} is more than the {len(texts)} texts of {path}")
            pick = np.random.default_rng(0).choice(len(texts), size=n, replace=False)
            return [texts[i] for i in sorted(pick)]
    where = ", ".join(map(str, config.data_dirs()))
    raise StudyError(f"no text/{dataset}/train.csv under {where}: point TRANSFER_STUDY_DATA at the data pack")


def main(argv: list[str] | None = None) -> None:
    from study.errors import StudyError

    try:
        run(argv)
    except StudyError as exc:
        raise SystemExit(f"error: {exc}") from None


def run(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ag_news")
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32, help="batch of the naive and dynamic-predict sides")
    p.add_argument("--batch-sizes", default="16,32,64", help="bucket sizes of the study's dynamic recipe")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    if not os.environ.get("TRANSFER_STUDY_DATA") and os.path.isdir("../shared/datapack"):
        os.environ["TRANSFER_STUDY_DATA"] = os.path.abspath("../shared/datapack")
    load_before = os.getloadavg()

    import keras
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    from study import config
    from study.zoo.text import build_text_encoder, embed, load_tokenizer
    from study.zoo.text.encoder import batches

    texts = load_texts(args.dataset, args.n)
    tokenizer = load_tokenizer("minilm_l6", max_length=args.max_length)
    encoder = build_text_encoder("minilm_l6", cache_dir=config.cache_dir())
    full = load_tokenizer("minilm_l6", max_length=512).ids(texts)
    lengths = np.array([len(ids) for ids in tokenizer.ids(texts)])
    print(
        f"{args.n} texts of {args.dataset} (train.csv, sample seed 0), all-MiniLM-L6-v2, max length {args.max_length}; "
        f"{config.cpu_count()} CPUs, threads {args.threads or 'default'}, {platform.machine()}, TF {tf.__version__}, "
        f"Keras {keras.__version__}; load average before {load_before[0]:.2f}"
    )
    print(
        f"tokens per text: mean {lengths.mean():.1f}, median {np.median(lengths):.0f}, max {lengths.max()}; "
        f"{sum(len(ids) > args.max_length for ids in full)} of {len(texts)} truncated at {args.max_length}"
    )

    def predict_side(bucket: bool, pad_to: int | None) -> Callable[[list[str]], np.ndarray]:
        def go(sample: list[str]) -> np.ndarray:
            ids = tokenizer.ids(sample)
            out = np.empty((len(ids), 384), dtype="float32")
            for idx in batches([len(r) for r in ids], args.batch_size, bucket):
                batch = tokenizer.pad([ids[i] for i in idx], pad_to)
                out[idx] = np.asarray(encoder.predict_on_batch(batch.inputs()))
            return out

        return go

    sides = {
        "naive": predict_side(False, args.max_length),
        "dynamic-predict": predict_side(True, None),
    }
    sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    for b in sizes:
        sides[f"dynamic-{b}"] = lambda sample, b=b: embed(encoder, tokenizer, sample, batch_size=b)

    def slots(batch_size: int, bucket: bool) -> int:
        if not bucket:
            return len(texts) * args.max_length
        order = np.sort(lengths)
        return sum(int(order[i : i + batch_size].max()) * len(order[i : i + batch_size])
                   for i in range(0, len(order), batch_size))  # fmt: skip

    for fn in sides.values():  # warm-up: trace what is traced up front
        fn(texts[:64])
    best: dict[str, float] = {}
    out: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            out[name] = fn(texts)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    naive_slots = slots(args.batch_size, False)
    for name in sides:
        b = args.batch_size if name in ("naive", "dynamic-predict") else int(name.split("-")[1])
        used = slots(b, name != "naive")
        diff = float(np.abs(out[name] - out["naive"]).max())
        print(f"{name:16s} {len(texts) / best[name]:7.1f} texts/s  ({best[name]:.2f} s)  token slots {used} "
              f"({used / naive_slots:.0%})  max |diff| {diff:.1e}")  # fmt: skip
    fastest = min((n for n in sides if n != "naive"), key=lambda n: best[n])
    print(f"load average after {os.getloadavg()[0]:.2f}")
    print(f"speedup {best['naive'] / best[fastest]:.2f}x ({fastest} over naive)")


if __name__ == "__main__":
    main()
