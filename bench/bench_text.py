"""Benchmark: frozen sentence embeddings with dynamic padding + length bucketing vs naive fixed-length padding.

    python -m bench.bench_text [--dataset ag_news] [--n 512] [--max-length 128] [--batch-size 32] [--repeats 1]

Both sides embed the same ``--n`` real texts (a fixed random sample, seed 0, of the dataset's ``train.csv`` in
``$TRANSFER_STUDY_DATA/text``, default ``../shared/datapack``) with the same all-MiniLM-L6-v2 Keras encoder
(``study.zoo.text``), the same tokenizer truncating at ``--max-length`` tokens, the same batch size and the same
call (``predict_on_batch``), in one process:

- naive     texts in their original order, every batch padded to ``--max-length`` (the shipped tokenizer.json's
            own setting: padding and truncation at 128), as most tutorials do;
- dynamic   texts sorted by token length, cut into batches, each batch padded to its own longest text.

Timed: tokenisation + padding + the encoder, after one untimed warm-up pass of each side over the first 64 texts
(graph tracing). With ``--repeats R`` each side runs R times alternately and its fastest run counts. Printed: the
token statistics, the token slots each side computes, the largest embedding difference between the sides (they
must agree: padding is masked), texts/s of each and, last, ``speedup N.NNx`` (dynamic over naive).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time

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
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    if not os.environ.get("TRANSFER_STUDY_DATA") and os.path.isdir("../shared/datapack"):
        os.environ["TRANSFER_STUDY_DATA"] = os.path.abspath("../shared/datapack")

    import keras
    import tensorflow as tf

    from study import config
    from study.zoo.text import build_text_encoder, embed, load_tokenizer

    texts = load_texts(args.dataset, args.n)
    tokenizer = load_tokenizer("minilm_l6", max_length=args.max_length)
    encoder = build_text_encoder("minilm_l6", cache_dir=config.cache_dir())
    full = load_tokenizer("minilm_l6", max_length=512).ids(texts)
    lengths = np.array([len(ids) for ids in tokenizer.ids(texts)])
    print(
        f"{args.n} texts of {args.dataset} (train.csv, sample seed 0), all-MiniLM-L6-v2, max length {args.max_length}, "
        f"batch {args.batch_size}; {config.cpu_count()} CPUs, {platform.machine()}, TF {tf.__version__}, "
        f"Keras {keras.__version__}"
    )
    print(
        f"tokens per text: mean {lengths.mean():.1f}, median {np.median(lengths):.0f}, max {lengths.max()}; "
        f"{sum(len(ids) > args.max_length for ids in full)} of {len(texts)} truncated at {args.max_length}"
    )
    sides = {
        "naive": {"bucket": False, "pad_to": args.max_length},
        "dynamic": {"bucket": True, "pad_to": None},
    }
    slots = {"naive": len(texts) * args.max_length}
    order = np.sort(lengths)
    slots["dynamic"] = sum(int(order[i : i + args.batch_size].max()) * len(order[i : i + args.batch_size])
                           for i in range(0, len(order), args.batch_size))  # fmt: skip
    for kw in sides.values():  # warm-up: trace the prediction function for both kinds of shape
        embed(encoder, tokenizer, texts[:64], batch_size=args.batch_size, **kw)
    best: dict[str, float] = {}
    out: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, kw in sides.items():
            t0 = time.perf_counter()
            out[name] = embed(encoder, tokenizer, texts, batch_size=args.batch_size, **kw)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    diff = float(np.abs(out["naive"] - out["dynamic"]).max())
    print(f"token slots computed: naive {slots['naive']}, dynamic {slots['dynamic']} "
          f"({slots['dynamic'] / slots['naive']:.0%}); largest embedding difference {diff:.1e}")  # fmt: skip
    for name in sides:
        print(f"{name:8s} {len(texts) / best[name]:7.1f} texts/s  ({best[name]:.2f} s)")
    print(f"speedup {best['naive'] / best['dynamic']:.2f}x")


if __name__ == "__main__":
    main()
