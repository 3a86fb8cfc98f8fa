"""The probes the advisor reads: how well a frozen backbone's pooled features already separate N labelled images.

Computed on the N *training* images only (a user's folder without its held-out split; a study cell's train +
validation images, never its test split), so the study's cells and a user's folder get the same numbers:

- ``linear_probe_accuracy``: cross-validated accuracy of the linear-probe strategy's own recipe (logistic regression
  on the raw features: C = 1 for images; for text the C of ``c_grid`` that cross-validates best on these same folds,
  as the text strategy chooses it), pooled over the out-of-fold predictions, with ``linear_probe_std``, the standard
  deviation of the per-fold accuracies (how much to trust it). Version 1 used L2-normalised features (the
  similarity report's probe); that much stronger regularisation ranked backbones worse: on the first 12 datasets of
  the broad study its backbone pick for the linear probe lost 1.4-1.8 points at n = 250 and 1000 against the best
  backbone, more than always taking EfficientNet-Lite1 (0.7-1.0). Version 2 standardised image features, as the
  strategy then did; version 3 follows the strategy to raw features (``study.train.strategies.run_linear_probe``
  says why); version 4 averages repeated partitions (below);
- ``knn_accuracy``: cross-validated k-nearest-neighbour accuracy on the same folds;
- ``logme``: LogME (You et al., ICML 2021; ``study.probes.similarity.logme``) on all N images (no folds: it is an
  evidence, not a held-out score).

Folds are stratified, group-aware when the images have groups (patients, slides, tracks), and shrink to what the
smallest class allows (``study.probes.similarity.out_of_fold``).

**Repeated cross-validation** (``repeats``; default ``repeats_for(n)``): the linear probe and kNN are averaged over
several fold partitions of the same images (seeds ``seed, seed + 1, ...``). Which partition a probe happens to draw
is noise about the user's own images that costs nothing to remove: measured on image folders of the data pack
(PACS art paintings, five backbones, 8 partitions each), the difference between two backbones' single-partition
probes moved with the partition by 6.4 points (sd) at 39 images and 2.5 at 202, as much as the backbones differ.
Averaging R partitions divides that by about sqrt(R); small folders get more repeats (``REPEAT_IMAGES`` / n, at most
``MAX_REPEATS``), so a probe costs about the same at every n below ``REPEAT_IMAGES`` images. The text advisor keeps
one partition (``repeats=1``): its probe mirrors ``text_linear_probe``, which chooses C on one partition.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from study.errors import StudyError
from study.probes.similarity import _probe_inputs, knn_predictor, logme, out_of_fold, select_c_repeated

FOLDS = 5
K = 5
REPEAT_IMAGES = 1000
MAX_REPEATS = 8
PROBE_KEYS = ("linear_probe_accuracy", "linear_probe_std", "knn_accuracy", "logme")


def repeats_for(n: int) -> int:
    """How many fold partitions a probe of ``n`` images averages: ``REPEAT_IMAGES / n`` rounded up, 1 to
    ``MAX_REPEATS`` (8 at 50 and at 125 images, 4 at 250, 2 at 500, 1 from 1000)."""
    return int(min(MAX_REPEATS, max(1, math.ceil(REPEAT_IMAGES / max(int(n), 1)))))


def probe_scores(
    F: npt.ArrayLike, y: npt.ArrayLike, groups: npt.ArrayLike | None = None, folds: int = FOLDS, seed: int = 0,
    k: int = K, c_grid: Sequence[float] | None = None, repeats: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Every probe of one feature set: the ``PROBE_KEYS`` plus ``n``, ``n_classes``, ``folds``, ``repeats`` and
    ``seconds``.

    ``c_grid``: the linear probe reports the best-cross-validating C of the grid (the text strategy's recipe; its
    accuracy is then the selected value's, optimistic by the selection as SentEval's dev accuracy is); None: C = 1,
    the image ``linear_probe``'s recipe. ``repeats``: fold partitions averaged (default ``repeats_for(n)``); with a
    grid, C is chosen on the average over them. ``folds`` is the number of folds of one partition.

    Raises ``StudyError`` (one line) when the images cannot be probed: fewer than 4, a single class, or a class with
    a single image (no fold could hold it out and train on it).
    """
    t0 = time.perf_counter()
    f, labels = _probe_inputs(F, y)
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        small = classes[counts.argmin()]
        raise StudyError(f"class {small!r} has 1 training image; a cross-validated probe needs at least 2 per class")
    if groups is not None and np.unique(np.asarray(groups)).size < 2:
        groups = None  # one group: nothing can leak between folds that ungrouped folds would not also share

    # One BLAS thread: these matrices are small (N x 1280), and threads fighting a sweep's workers for the cores
    # made a 1000-image probe 20x slower (2.4 s instead of 0.05 s for the five logistic regressions, measured).
    r = repeats_for(labels.size) if repeats is None else int(repeats)
    if r < 1:
        raise StudyError(f"repeats must be at least 1, got {repeats}")
    seeds = [seed + i for i in range(r)]
    with threadpool_limits(1):
        raw = np.asarray(F, dtype=np.float64)
        _, accuracy, runs = select_c_repeated(raw, labels, (1.0,) if c_grid is None else c_grid, folds, seeds, groups)
        near = [out_of_fold(f, labels, folds, s, knn_predictor(k), groups)[0] for s in seeds]
        evidence = logme(raw, labels)
    per_fold = [float(np.mean(lin[t] == labels[t])) for lin, tests in runs for t in tests]
    return {"linear_probe_accuracy": accuracy,
            "linear_probe_std": float(np.std(per_fold, ddof=1)) if len(per_fold) > 1 else 0.0,
            "knn_accuracy": float(np.mean([np.mean(p == labels) for p in near])), "logme": evidence,
            "n": int(f.shape[0]), "n_classes": int(classes.size), "folds": len(runs[0][1]), "repeats": r,
            "seconds": time.perf_counter() - t0}  # fmt: skip
