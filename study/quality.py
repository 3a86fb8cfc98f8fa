"""The degenerate-model rule: one definition at the bottom, used where a model is trained and where rows are compared.

With a few hundred training images a from-scratch network often collapses to the majority class, and its accuracy
then *looks* like a baseline; a row like that would invent a transfer gain. Training labels such a model at the
source (``study.train.training.classification_metrics``) and the statistics exclude it
(``study.analysis.stats.mark_degenerate``), both with ``degenerate_rule``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from study.errors import StudyError

_Array = npt.NDArray[Any]

DEGENERATE_TOL = 0.01
"""Absolute slack (accuracy points) in the degeneracy rule; see ``is_degenerate``."""

COLLAPSE_SHARE = 0.95
"""A model that puts at least this share of its predictions on one class has (nearly) collapsed."""


def prediction_summary(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int) -> dict[str, Any]:
    """The per-row metrics this module needs, computed once from labels and predictions.

    Returns ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present in ``y_true``, as
    scikit-learn), ``majority_share`` (share of the most frequent true class), ``top_prediction_share``
    (share of the most frequent predicted class), ``n_classes``, ``n_test`` and ``correct`` (a list of 0/1).
    Runners store these columns so that ``mark_degenerate`` and the bootstraps work on the table alone.
    """
    t, p = _check_labels(y_true, y_pred, n_classes)
    correct = (t == p).astype(np.int8)
    classes, true_counts = np.unique(t, return_counts=True)
    recalls = [float(correct[t == c].mean()) for c in classes]
    _, pred_counts = np.unique(p, return_counts=True)
    n = t.size
    return {
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float(np.mean(recalls)),
        "majority_share": float(true_counts.max() / n),
        "top_prediction_share": float(pred_counts.max() / n),
        "n_classes": int(n_classes),
        "n_test": int(n),
        "correct": correct.tolist(),
    }


def degenerate_rule(
    accuracy: float | None,
    majority_share: float | None,
    balanced_accuracy: float | None = None,
    n_classes: int | None = None,
    top_prediction_share: float | None = None,
    tol: float = DEGENERATE_TOL,
    roc_auc: float | None = None,
) -> bool:
    """The degeneracy rule on already-computed metrics (``is_degenerate`` documents it).

    A missing accuracy (``None``/NaN: the run produced no measurement) counts as degenerate, since such
    a row cannot be compared. Any other criterion whose inputs are missing is skipped, so a table without
    ``balanced_accuracy`` still gets the majority-class check.
    """
    acc, maj = _float_or_none(accuracy), _float_or_none(majority_share)
    if acc is None:
        return True
    top = _float_or_none(top_prediction_share)
    if top is not None and top >= max(COLLAPSE_SHARE, (1.0 + (maj if maj is not None else 0.0)) / 2.0):
        # Collapsed predictions (unless the test set itself is that imbalanced and the model is right).
        return True
    if maj is not None and acc <= maj + tol:
        return True
    auc = _float_or_none(roc_auc)
    if auc is not None and auc <= 0.5 + tol:
        # Scores that rank no positive above a negative carry no information, whatever the threshold happened to
        # score on an imbalanced test set (a near-constant p = 0.50 model scored 0.625 on 62.5 % pneumonia).
        return True
    bacc, ncls = _float_or_none(balanced_accuracy), _int_or_none(n_classes)
    return bacc is not None and ncls is not None and ncls > 0 and bacc <= 1.0 / ncls + tol


def is_degenerate(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int, tol: float = DEGENERATE_TOL) -> bool:
    """Whether a model is no better than a trivial predictor, so it must not count as a result.

    Exact rule (``tol`` = 0.01 by default, an absolute share): the model is degenerate when ANY of

    1. **collapse**: the most frequent predicted class receives at least ``COLLAPSE_SHARE`` (95%) of the
       predictions AND at least ``(1 + majority_share) / 2``, i.e. it over-predicts that class by half the
       room the test set leaves (so a heavily imbalanced test set answered correctly is not a collapse);
    2. **majority baseline**: ``accuracy <= majority_share + tol``, where ``majority_share`` is the share of
       the test set's most frequent class (what "always predict the majority" scores);
    3. **chance per class**: ``balanced_accuracy <= 1 / n_classes + tol``;
    4. **no information in the scores** (when probabilities are known, ``degenerate_rule(roc_auc=...)``):
       ``roc_auc <= 0.5 + tol`` (macro one-vs-rest for several classes).

    A constant predictor meets all of them; a model that merely errs on a hard task meets none.
    """
    s = prediction_summary(y_true, y_pred, n_classes)
    return degenerate_rule(
        s["accuracy"],
        s["majority_share"],
        s["balanced_accuracy"],
        n_classes,
        s["top_prediction_share"],
        tol,
    )


def _check_labels(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, n_classes: int) -> tuple[_Array, _Array]:
    t = np.asarray(y_true).reshape(-1)
    p = np.asarray(y_pred).reshape(-1)
    if t.size == 0:
        raise StudyError("no test predictions to evaluate; the test set is empty")
    if t.shape != p.shape:
        raise StudyError(f"y_true has {t.size} labels but y_pred has {p.size}; pass one prediction per label")
    if int(n_classes) < 1:
        raise StudyError(f"n_classes must be at least 1, got {n_classes}")
    return t, p


def _float_or_none(x: object) -> float | None:
    if x is None or (np.ndim(x) == 0 and pd.isna(x)):
        return None
    return float(x)  # type: ignore[arg-type]


def _int_or_none(x: object) -> int | None:
    f = _float_or_none(x)
    return None if f is None else int(f)
