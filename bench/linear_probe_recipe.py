"""The linear probe's recipe on the reference study's own cells: standardised features (the study's) vs raw vs L2.

    python -m bench.linear_probe_recipe [--backbones mobilenet_v2,efficientnet_lite0] [--sizes 50,250,1000] [--seed 0]

Why: ``bench.reproduce_mteb`` found that standardising MiniLM's embeddings costs about 2 points at 8 texts per class.
The image ``linear_probe`` strategy standardises its pooled features too (``study.train.strategies.run_linear_probe``:
``StandardScaler`` then ``LogisticRegression(C=1)``; the broad grids run 1 trial, so C stays 1), and so do the
advisor's cell probes. This measures what that recipe costs on the committed reference study's image cells (64 px,
no shift-ladder or pair cells): for each cell it rebuilds the cell's own split (``CellRunner.cell_data``: the same
training and test images as the reference run), takes the cached pooled features, fits the same logistic regression
(C = 1, ``random_state`` 0) on (a) standardised features, the study's recipe, (b) the raw features, (c)
L2-normalised features, and scores each cell's test split. Column ``reference`` is the committed accuracy of the
same cell: (a) must reproduce it (it does to within a few images where scikit-learn's thread count differs).
Choosing a recipe from those test accuracies would be selection on the test split, so it also compares (a) and (b)
as a recipe should be chosen, on training images only: their 5-fold out-of-fold accuracy over the cell's N images
(the advisor's cell-probe folds). Not a test: it loads every cell's split and features and cross-validates (minutes
on 2 cores with the features cached).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("standardised", "raw", "l2")


def _features(runner: Any, data: Any, spec: Any, split: str, idx: np.ndarray) -> np.ndarray:
    """Pooled image features of a backbone, or (``spec`` None) MiniLM's cached text embeddings, as float64."""
    from study.train.text_strategies import _emb

    out = _emb(data, runner.engine, split, idx) if spec is None else runner.engine.pooled(data, spec, split, idx)[0]
    return np.asarray(out, dtype=np.float64)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="mobilenet_v2,efficientnet_lite0")
    parser.add_argument("--sizes", default="50,250,1000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the per-cell table as CSV")
    parser.add_argument("--text", action="store_true",
                        help="the text_linear_probe cells instead (MiniLM's unit-norm embeddings, 128 tokens)")
    parser.add_argument("--no-cv", action="store_true", help="test-split columns only (the CV is most of the time)")
    args = parser.parse_args(argv)
    from study.cli_support import quiet_tensorflow

    quiet_tensorflow()
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler, normalize

    from study import config
    from study.engine.cell import CellRunner
    from study.engine.grid import Cell
    from study.probes.scores import FOLDS
    from study.probes.similarity import linear_predictor, out_of_fold, select_c
    from study.train.text_strategies import PROBE_C_GRID
    from study.zoo.backbones import get_backbone

    runs = pd.read_parquet(REPO / "results" / "reference" / "runs.parquet")
    strategy, size = ("text_linear_probe", 128) if args.text else ("linear_probe", 64)
    keep = (
        (runs["strategy"] == strategy) & (runs["seed"] == args.seed) & (runs["image_size"] == size)
        & ~runs["dataset"].str.contains("@") & runs["source"].isna()
        & (runs["backbone"].isin(args.backbones.split(",")) | args.text)
        & runs["n_images"].isin([int(s) for s in args.sizes.split(",")])
    )  # fmt: skip
    cells = runs[keep].drop_duplicates(["dataset", "n_images", "backbone"])
    runner = CellRunner(config.cache_dir(), config.data_dirs(), config.weights_dirs())
    rows, t0 = [], time.perf_counter()
    for c in cells.itertuples(index=False):
        cell = Cell(dataset=c.dataset, n_images=int(c.n_images), strategy=strategy, backbone=c.backbone,
                    image_size=size, seed=args.seed, epochs=10, trials=1, augment=False, max_test=None,
                    grid="probe-recipe")  # fmt: skip
        data = runner.cell_data(cell)
        spec = None if args.text else get_backbone(c.backbone)
        train, test = _features(runner, data, spec, "pool", data.train_idx), _features(runner, data, spec, "test",
                                                                                       data.test_idx)  # fmt: skip
        scaler = StandardScaler().fit(train)
        inputs = {"standardised": (scaler.transform(train), scaler.transform(test)), "raw": (train, test),
                  "l2": (normalize(train), normalize(test))}  # fmt: skip
        row = {"dataset": c.dataset, "n_images": int(c.n_images), "backbone": c.backbone, "reference": c.accuracy}
        for name in RECIPES:
            a, b = inputs[name]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # few images per class at n = 50 is the point
                clf = LogisticRegression(C=1.0, max_iter=2000, random_state=0).fit(a, data.y_train)
            row[name] = float(np.mean(clf.predict(b) == data.y_test))
        if args.text:  # text_linear_probe's recipe since 8ea1493: raw embeddings, C by 5-fold CV on the training texts
            c_best = select_c(train, data.y_train, PROBE_C_GRID, 5, args.seed)[0]
            clf = LogisticRegression(C=c_best, max_iter=2000, random_state=0).fit(train, data.y_train)
            row["raw_cv_c"] = float(np.mean(clf.predict(test) == data.y_test))
        # The same comparison made the way a recipe should be chosen, on training images only: 5-fold out-of-fold
        # accuracy over the cell's N images (train + validation, as the advisor's cell probes), never its test split.
        rows_n = np.sort(np.concatenate([data.train_idx, data.val_idx]))
        feats = _features(runner, data, spec, "pool", rows_n)
        labels = data.pool.labels[rows_n]
        groups = None if data.pool.groups is None else data.pool.groups[rows_n]
        if groups is not None and np.unique(groups).size < 2:
            groups = None
        for name, standardise in () if args.no_cv else (("cv_standardised", True), ("cv_raw", False)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pred = out_of_fold(feats, labels, FOLDS, args.seed, linear_predictor(1.0, standardise), groups)[0]
            row[name] = float(np.mean(pred == labels))
        if args.no_cv:
            row["cv_standardised"] = row["cv_raw"] = np.nan
        rows.append(row)
        print(f"{c.dataset[:26]:26s} n={c.n_images:<5d} {c.backbone:18s} reference {c.accuracy:.3f}  " +
              "  ".join(f"{r} {row[r]:.3f}" for r in RECIPES) + f"  ({time.perf_counter() - t0:.0f} s)",
              flush=True)  # fmt: skip
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    print()
    print("| n | cells | reference | standardised (the recipe before 2026-12-01) | raw | L2 | "
          "raw better / worse than standardised | 5-fold CV on the training images: standardised | raw | "
          "CV prefers raw / standardised |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n, g in table.groupby("n_images"):
        print(f"| {n} | {len(g)} | {g['reference'].mean():.4f} | {g['standardised'].mean():.4f} | {g['raw'].mean():.4f}"
              f" | {g['l2'].mean():.4f} | {(g['raw'] > g['standardised']).sum()} / "
              f"{(g['raw'] < g['standardised']).sum()} | {g['cv_standardised'].mean():.4f} | {g['cv_raw'].mean():.4f}"
              f" | {(g['cv_raw'] > g['cv_standardised']).sum()} / {(g['cv_raw'] < g['cv_standardised']).sum()} |")
    if args.text:
        print("text_linear_probe's recipe (raw, C by 5-fold CV on the training texts), mean test accuracy per n: " +
              ", ".join(f"{n}: {g['raw_cv_c'].mean():.4f}" for n, g in table.groupby("n_images")) +
              f"; better / worse than standardised in {(table['raw_cv_c'] > table['standardised']).sum()} / "
              f"{(table['raw_cv_c'] < table['standardised']).sum()} cells")  # fmt: skip
    print(f"pooled over all cells, CV on the training images prefers raw in "
          f"{(table['cv_raw'] > table['cv_standardised']).sum()} of {len(table)} cells")  # fmt: skip


if __name__ == "__main__":
    main()
