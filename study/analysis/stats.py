"""Fair-comparison statistics for the results table.

A *row* is one trained model: one (cell, seed), where a cell is ``CELL_KEYS`` =
(dataset, n_images, strategy, backbone, image_size). Rows carry ``accuracy``, ``balanced_accuracy``,
``majority_share`` and, ideally, ``correct``: the per-test-example 0/1 correctness vector (a list), so that
confidence intervals account for the finite test set as well as for seed-to-seed variation.

Why this module exists: with a few hundred training images a from-scratch network often collapses to the
majority class, and its accuracy then *looks* like a baseline. Comparing a pretrained strategy against
such a row would invent a transfer gain. So degenerate rows are flagged (``is_degenerate``,
``mark_degenerate``) and excluded from every summary and comparison, and every difference comes with a
bootstrap interval (``bootstrap_ci``, ``difference_ci``) before it is called a gain or a loss.

Every function is deterministic for a fixed ``rng_seed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from study.errors import StudyError
from study.quality import (  # noqa: F401 - part of this module's API
    COLLAPSE_SHARE,
    DEGENERATE_TOL,
    _check_labels,
    _float_or_none,
    _int_or_none,
    degenerate_rule,
    is_degenerate,
    prediction_summary,
)
from study.train.strategies import baseline_strategies

CELL_KEYS: tuple[str, ...] = ("dataset", "n_images", "strategy", "backbone", "image_size")
"""Columns that identify a cell; rows of one cell differ only by seed."""

COMPARISON_KEYS: tuple[str, ...] = ("dataset", "n_images", "image_size")
"""The rows whose strategies and backbones are compared with each other (transfer gain, best per cell, advisor)."""

BUDGET_COLUMNS: tuple[str, ...] = ("trials_budget", "epochs_budget", "augment")
"""What every option of one comparison must share: comparing a 4-trial search with a 1-trial one is unfair."""

SEPARATE = "Keep one budget per store: sweep a different --trials/--epochs into its own --store."


BASELINE_KEYS: tuple[str, ...] = ("dataset", "n_images", "image_size")
"""The scratch baseline is chosen per (dataset, n_images, image_size), across backbones."""

PAIR_KEYS: tuple[str, ...] = ("source", "n_target_labels")
"""A domain-adaptation cell's extra axis (#20): its labelled source dataset and N_t. Empty for ordinary cells."""


def is_pair(frame: pd.DataFrame) -> pd.Series:
    """Rows of (source, target) cells: ``dataset`` is their target, ``n_images`` counts *source* images."""
    if "source" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["source"].notna()


def with_pair_keys(frame: pd.DataFrame, keys: Sequence[str]) -> tuple[str, ...]:
    """``keys`` plus ``PAIR_KEYS`` when ``frame`` holds pair cells, so grouping never mixes a pair cell (target
    dataset, n source images, a source, N_t) with an ordinary cell or with another source's or N_t's cells.

    Frames without pair rows keep exactly ``keys`` (their tables look as before)."""
    return (*keys, *PAIR_KEYS) if bool(is_pair(frame).any()) else tuple(keys)


def _pair_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the pair columns present (as missing values) so grouping on them works on any frame."""
    missing = [k for k in PAIR_KEYS if k not in frame.columns]
    return frame.assign(**{k: None for k in missing}) if missing else frame

_Array = npt.NDArray[Any]


# ----------------------------------------------------------------------------------------------------------
# Degenerate models
# ----------------------------------------------------------------------------------------------------------


def mark_degenerate(frame: pd.DataFrame, tol: float = DEGENERATE_TOL) -> pd.DataFrame:
    """A copy of ``frame`` with a boolean ``degenerate`` column (the ``is_degenerate`` rule per row).

    Needs ``accuracy`` and ``majority_share`` columns; uses ``balanced_accuracy`` with ``n_classes`` and
    ``top_prediction_share`` when present. Rows without an accuracy are flagged (``degenerate_rule``).
    A ``degenerate`` column already in the frame (set by the runner, e.g. for a diverged loss) is kept:
    the result is the OR of both.
    """
    _require_columns(frame, ("accuracy", "majority_share"), "mark_degenerate")
    out = frame.copy()

    def col(name: str) -> pd.Series:
        return out[name] if name in out.columns else pd.Series(np.nan, index=out.index)

    flags = [
        degenerate_rule(
            _float_or_none(acc),
            _float_or_none(maj),
            _float_or_none(bacc),
            _int_or_none(ncls),
            _float_or_none(top),
            tol,
            _float_or_none(auc),
        )
        for acc, maj, bacc, ncls, top, auc in zip(
            col("accuracy"),
            col("majority_share"),
            col("balanced_accuracy"),
            col("n_classes"),
            col("top_prediction_share"),
            col("roc_auc"),
            strict=True,
        )
    ]
    computed = pd.Series(flags, index=out.index, dtype=bool)
    if "degenerate" in out.columns:
        computed = computed | out["degenerate"].fillna(False).astype(bool)
    out["degenerate"] = computed
    return out


# ----------------------------------------------------------------------------------------------------------
# Bootstrap intervals
# ----------------------------------------------------------------------------------------------------------


def bootstrap_ci(
    correct_by_seed: Sequence[npt.ArrayLike],
    n_boot: int = 2000,
    level: float = 0.95,
    rng_seed: int = 0,
) -> tuple[float, float, float]:
    """Mean accuracy over seeds with a hierarchical percentile-bootstrap interval.

    Each replicate resamples the seeds with replacement, then, within each drawn seed, its test examples
    with replacement; the statistic is the mean over drawn seeds of their resampled accuracy. So the
    interval covers both seed-to-seed variation and the finiteness of the test set; with one seed it is
    the test-example bootstrap alone.

    Why no loop: resampling ``n`` 0/1 outcomes with replacement from a vector with ``c`` ones yields a
    Binomial(n, c/n) count, exactly. So a replicate needs one binomial draw per drawn seed, and all
    ``n_boot`` replicates are drawn at once. Seeds may have different test-set sizes.

    Returns ``(mean, low, high)`` where ``mean`` is the plain mean of per-seed accuracies.
    """
    counts, sizes = _counts_from_correct(correct_by_seed, "correct_by_seed")
    return _hierarchical(counts, sizes, n_boot, level, rng_seed)


def bootstrap_ci_from_accuracies(
    accuracies: Sequence[float] | npt.ArrayLike,
    n_test: int | Sequence[int] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    rng_seed: int = 0,
) -> tuple[float, float, float]:
    """The fallback when rows lack per-example correctness.

    With ``n_test`` (test-set size, one per seed or shared) the correct counts are recovered as
    ``round(accuracy * n_test)`` and the hierarchical bootstrap of ``bootstrap_ci`` applies exactly
    (0/1 outcomes are exchangeable, so counts are all it needs). Without it, only the seeds can be
    resampled; with a single seed and no ``n_test`` there is nothing to resample and the interval is NaN.
    """
    acc = _finite_1d(accuracies, "accuracies")
    if n_test is not None:
        sizes = np.broadcast_to(np.asarray(n_test, dtype=np.int64), acc.shape).copy()
        if np.any(sizes <= 0):
            raise StudyError("n_test must be a positive number of test examples")
        counts = np.clip(np.rint(acc * sizes), 0, sizes).astype(np.int64)
        return _hierarchical(counts, sizes, n_boot, level, rng_seed)
    mean = float(acc.mean())
    if acc.size < 2:
        return mean, math.nan, math.nan
    _check_boot(n_boot, level)
    rng = np.random.default_rng(rng_seed)
    draws = rng.integers(0, acc.size, size=(n_boot, acc.size))
    low, high = _percentiles(acc[draws].mean(axis=1), level)
    return mean, low, high


def difference_ci(
    a_by_seed: Sequence[npt.ArrayLike],
    b_by_seed: Sequence[npt.ArrayLike],
    n_boot: int = 2000,
    level: float = 0.95,
    rng_seed: int = 0,
) -> tuple[float, float, float]:
    """Mean accuracy of A minus mean accuracy of B, with a hierarchical bootstrap interval.

    Paired when it can be: if A and B have the same number of seeds and every seed ``i`` of A has a
    correctness vector as long as seed ``i`` of B (the same test set), the seed index is resampled jointly
    and, within it, the same test examples for both. Pairing removes the variance due to which test
    examples happen to be easy, so a real difference is resolved with fewer seeds. Otherwise A and B are
    bootstrapped independently and the replicates subtracted.

    Paired replicates stay loop-free: a resampled example contributes +1 (A right, B wrong), -1 (A wrong,
    B right) or 0, so two nested binomial draws per drawn seed give the exact resampled difference.
    """
    a = [_as_01(x, "a_by_seed") for x in a_by_seed]
    b = [_as_01(x, "b_by_seed") for x in b_by_seed]
    if not a or not b:
        raise StudyError("difference_ci needs at least one seed on each side")
    _check_boot(n_boot, level)
    mean = float(np.mean([x.mean() for x in a]) - np.mean([x.mean() for x in b]))
    rng = np.random.default_rng(rng_seed)
    paired = len(a) == len(b) and all(x.size == y.size for x, y in zip(a, b, strict=True))
    if paired:
        sizes = np.array([x.size for x in a], dtype=np.int64)
        p_up = np.array([np.mean((x == 1) & (y == 0)) for x, y in zip(a, b, strict=True)])
        p_down = np.array([np.mean((x == 0) & (y == 1)) for x, y in zip(a, b, strict=True)])
        seeds = rng.integers(0, len(a), size=(n_boot, len(a)))
        n = sizes[seeds]
        n_down = rng.binomial(n, p_down[seeds])
        rest = np.where(p_down < 1.0, p_up / np.maximum(1.0 - p_down, 1e-300), 0.0)
        n_up = rng.binomial(n - n_down, np.clip(rest[seeds], 0.0, 1.0))
        reps = ((n_up - n_down) / n).mean(axis=1)
    else:
        reps = _replicates(*_counts_of(a), n_boot, rng) - _replicates(*_counts_of(b), n_boot, rng)
    low, high = _percentiles(reps, level)
    return mean, low, high


# ----------------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------------

_SUMMARY_COLUMNS = [
    *CELL_KEYS,
    "n_rows",
    "n_degenerate",
    "n_seeds",
    "accuracy_mean",
    "accuracy_std",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "balanced_accuracy_mean",
    "balanced_accuracy_std",
    "balanced_accuracy_ci_low",
    "balanced_accuracy_ci_high",
    "ci_method",
]


def mixed_budgets(frame: pd.DataFrame) -> list[str]:
    """Comparisons (``COMPARISON_KEYS``) whose rows were trained under more than one budget, described in words."""
    budget = [c for c in BUDGET_COLUMNS if c in frame.columns]
    if not budget or frame.empty or any(k not in frame.columns for k in COMPARISON_KEYS):
        return []
    described = []
    keys = with_pair_keys(frame, COMPARISON_KEYS)
    for key, rows in _pair_columns(frame).groupby(list(keys), sort=True, dropna=False):
        seen = rows[budget].drop_duplicates()
        if len(seen) > 1:
            budgets = " vs ".join(", ".join(f"{c}={v}" for c, v in r.items()) for _, r in seen.iterrows())
            pair = f" from {key[3]} (N_t={key[4]})" if len(key) > 3 and isinstance(key[3], str) else ""
            described.append(f"{key[0]} n={key[1]} at {key[2]} px{pair} ({budgets})")
    return described


def check_one_budget(frame: pd.DataFrame, fix: str) -> None:
    """Refuse a table in which one comparison mixes training budgets; ``fix`` says what to do instead."""
    mixed = mixed_budgets(frame)
    if mixed:
        more = f" and {len(mixed) - 1} more" if len(mixed) > 1 else ""
        raise StudyError(
            f"the results mix training budgets within one comparison: {mixed[0]}{more}; strategies must be "
            f"compared under one budget. {fix}"
        )


def summarise(
    frame: pd.DataFrame,
    n_boot: int = 2000,
    level: float = 0.95,
    rng_seed: int = 0,
    tol: float = DEGENERATE_TOL,
) -> pd.DataFrame:
    """One row per cell: how many seeds count, and mean, std and CI of (balanced) accuracy.

    Degenerate rows (``mark_degenerate``) are excluded and counted in ``n_degenerate``; a cell whose rows
    are all degenerate keeps its row with ``n_seeds == 0`` and NaN statistics, so the failure stays
    visible. ``ci_method`` says what the accuracy interval resamples: ``seeds+examples`` (``correct``
    vectors or ``n_test`` known), ``seeds`` (accuracies only) or ``none`` (one seed, nothing to resample).
    The balanced-accuracy interval resamples seeds only (it is not a mean of per-example outcomes).
    Each cell uses the same ``rng_seed``, so a cell's numbers do not depend on what else is in the table.
    """
    _require_columns(frame, CELL_KEYS, "summarise")
    check_one_budget(frame, SEPARATE)
    keys = with_pair_keys(frame, CELL_KEYS)
    marked = mark_degenerate(_pair_columns(frame), tol)
    records: list[dict[str, Any]] = []
    for key, rows in marked.groupby(list(keys), dropna=False, sort=True):
        good = rows[~rows["degenerate"]]
        rec: dict[str, Any] = dict(zip(keys, key, strict=True))
        rec.update(n_rows=len(rows), n_degenerate=int(rows["degenerate"].sum()), n_seeds=len(good))
        rec.update(_accuracy_stats(good, n_boot, level, rng_seed))
        rec.update(_balanced_stats(good, n_boot, level, rng_seed))
        records.append(rec)
    columns = [*keys, *_SUMMARY_COLUMNS[len(CELL_KEYS) :]]
    return pd.DataFrame.from_records(records, columns=columns)


_GAIN_COLUMNS = [
    "dataset",
    "n_images",
    "backbone",
    "image_size",
    "strategy",
    "n_seeds",
    "n_degenerate",
    "accuracy",
    "baseline_strategy",
    "baseline_backbone",
    "baseline_accuracy",
    "baseline_n_seeds",
    "gain",
    "gain_ci_low",
    "gain_ci_high",
    "negative_transfer",
    "significant_gain",
]


def transfer_gain(
    frame: pd.DataFrame,
    n_boot: int = 2000,
    level: float = 0.95,
    rng_seed: int = 0,
    tol: float = DEGENERATE_TOL,
) -> pd.DataFrame:
    """Each pretrained strategy against the best from-scratch baseline, with an interval and a verdict.

    The baseline for (dataset, n_images, image_size) is the best scratch cell among the strategies whose record
    says ``baseline`` (``study.train.strategies.baseline_strategies``) **across all backbones**: a scratch network
    is a baseline whatever architecture it has, and the question a user asks is "does ImageNet pretraining beat
    the best I could train myself". Best = highest mean accuracy over non-degenerate rows; degenerate rows never
    make a baseline. (Choosing the best of several baselines by its sample mean biases it slightly upwards, which makes
    ``significant_gain`` conservative.)

    Domain-adaptation (pair) cells are left out: they have no scratch baseline of their own.

    One row per pretrained cell (dataset, n_images, backbone, image_size, strategy). ``gain`` is
    ``accuracy - baseline_accuracy`` with a ``difference_ci`` interval (paired over test examples when
    both sides store ``correct`` vectors of equal length). ``negative_transfer`` is True when the gain is
    below 0 and the interval excludes 0; ``significant_gain`` when above 0 and the interval excludes 0.
    Both are False when there is no usable baseline or no non-degenerate pretrained row.
    """
    _require_columns(frame, CELL_KEYS, "transfer_gain")
    check_one_budget(frame, SEPARATE)
    frame = frame[~is_pair(frame)]  # pair cells answer another question (``domain_adaptation_table``)
    marked = mark_degenerate(frame, tol)
    is_scratch = marked["strategy"].isin(baseline_strategies())
    good_scratch = marked[is_scratch & ~marked["degenerate"]]

    baselines: dict[tuple[Any, ...], tuple[Any, Any, pd.DataFrame]] = {}
    for key, rows in good_scratch.groupby(list(BASELINE_KEYS), dropna=False, sort=True):
        best: tuple[float, Any, Any, pd.DataFrame] | None = None
        for (strategy, backbone), cell in rows.groupby(["strategy", "backbone"], dropna=False, sort=True):
            mean = float(cell["accuracy"].mean())
            if best is None or mean > best[0]:
                best = (mean, strategy, backbone, cell)
        if best is not None:
            baselines[_norm_key(key)] = best[1:]

    keys = ["dataset", "n_images", "backbone", "image_size", "strategy"]
    records: list[dict[str, Any]] = []
    for key, rows in marked[~is_scratch].groupby(keys, dropna=False, sort=True):
        rec: dict[str, Any] = dict(zip(keys, key, strict=True))
        good = rows[~rows["degenerate"]]
        rec.update(n_seeds=len(good), n_degenerate=int(rows["degenerate"].sum()))
        rec["accuracy"] = float(good["accuracy"].mean()) if len(good) else math.nan
        base = baselines.get(_norm_key(tuple(rec[k] for k in BASELINE_KEYS)))
        rec.update(
            baseline_strategy=None,
            baseline_backbone=None,
            baseline_accuracy=math.nan,
            baseline_n_seeds=0,
            gain=math.nan,
            gain_ci_low=math.nan,
            gain_ci_high=math.nan,
            negative_transfer=False,
            significant_gain=False,
        )
        if base is not None:
            b_strategy, b_backbone, b_rows = base
            rec.update(
                baseline_strategy=b_strategy,
                baseline_backbone=b_backbone,
                baseline_accuracy=float(b_rows["accuracy"].mean()),
                baseline_n_seeds=len(b_rows),
            )
            if len(good):
                gain, low, high = _row_difference(good, b_rows, n_boot, level, rng_seed)
                rec.update(gain=gain, gain_ci_low=low, gain_ci_high=high)
                if not (math.isnan(low) or math.isnan(high)):
                    rec["negative_transfer"] = bool(gain < 0 and high < 0)
                    rec["significant_gain"] = bool(gain > 0 and low > 0)
        records.append(rec)
    return pd.DataFrame.from_records(records, columns=_GAIN_COLUMNS)


# ----------------------------------------------------------------------------------------------------------
# Internals
# ----------------------------------------------------------------------------------------------------------


def _require_columns(frame: pd.DataFrame, cols: Sequence[str], where: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise StudyError(f"{where} needs columns {', '.join(missing)}; the results table lacks them")


def _check_boot(n_boot: int, level: float) -> None:
    if n_boot < 1:
        raise StudyError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise StudyError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")


def _finite_1d(x: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise StudyError(f"{name} is empty; need at least one seed")
    if not np.all(np.isfinite(arr)):
        raise StudyError(f"{name} contains NaN or infinite values")
    return arr


def _as_01(x: npt.ArrayLike, name: str) -> npt.NDArray[np.int8]:
    arr = np.asarray(x).reshape(-1)
    if arr.size == 0:
        raise StudyError(f"{name} has a seed with no test examples")
    if arr.dtype != bool and not np.all((arr == 0) | (arr == 1)):
        raise StudyError(f"{name} must hold 0/1 correctness per test example")
    return arr.astype(np.int8)


def _counts_of(vectors: Sequence[npt.NDArray[np.int8]]) -> tuple[_Array, _Array]:
    counts = np.array([int(v.sum()) for v in vectors], dtype=np.int64)
    sizes = np.array([v.size for v in vectors], dtype=np.int64)
    return counts, sizes


def _counts_from_correct(correct_by_seed: Sequence[npt.ArrayLike], name: str) -> tuple[_Array, _Array]:
    vectors = [_as_01(x, name) for x in correct_by_seed]
    if not vectors:
        raise StudyError(f"{name} is empty; need at least one seed")
    return _counts_of(vectors)


def _replicates(counts: _Array, sizes: _Array, n_boot: int, rng: np.random.Generator) -> _Array:
    """``n_boot`` hierarchical-bootstrap replicates of the mean accuracy (see ``bootstrap_ci``)."""
    seeds = rng.integers(0, counts.size, size=(n_boot, counts.size))
    n = sizes[seeds]
    return (rng.binomial(n, (counts / sizes)[seeds]) / n).mean(axis=1)


def _hierarchical(
    counts: _Array, sizes: _Array, n_boot: int, level: float, rng_seed: int
) -> tuple[float, float, float]:
    _check_boot(n_boot, level)
    mean = float(np.mean(counts / sizes))
    reps = _replicates(counts, sizes, n_boot, np.random.default_rng(rng_seed))
    low, high = _percentiles(reps, level)
    return mean, low, high


def _percentiles(reps: _Array, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(reps, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _correct_vectors(rows: pd.DataFrame) -> list[npt.NDArray[np.int8]] | None:
    """The rows' ``correct`` vectors, or None unless every row has one."""
    if "correct" not in rows.columns or rows.empty:
        return None
    out = []
    for value in rows["correct"]:
        if value is None or (np.ndim(value) == 0 and pd.isna(value)):
            return None
        out.append(_as_01(value, "correct"))
    return out


def _accuracy_samples(rows: pd.DataFrame) -> tuple[_Array, _Array] | None:
    """(counts, sizes) per row when examples can be resampled: from ``correct`` or ``n_test``."""
    vectors = _correct_vectors(rows)
    if vectors is not None:
        return _counts_of(vectors)
    if "n_test" in rows.columns and rows["n_test"].notna().all() and not rows.empty:
        sizes = rows["n_test"].to_numpy(dtype=np.int64)
        acc = rows["accuracy"].to_numpy(dtype=np.float64)
        return np.clip(np.rint(acc * sizes), 0, sizes).astype(np.int64), sizes
    return None


def _accuracy_stats(rows: pd.DataFrame, n_boot: int, level: float, rng_seed: int) -> dict[str, Any]:
    nan = math.nan
    out: dict[str, Any] = dict(
        accuracy_mean=nan, accuracy_std=nan, accuracy_ci_low=nan, accuracy_ci_high=nan, ci_method="none"
    )
    if rows.empty:
        return out
    acc = rows["accuracy"].to_numpy(dtype=np.float64)
    out["accuracy_mean"] = float(acc.mean())
    out["accuracy_std"] = float(acc.std(ddof=1)) if acc.size > 1 else nan
    samples = _accuracy_samples(rows)
    if samples is not None:
        _, low, high = _hierarchical(*samples, n_boot, level, rng_seed)
        out.update(accuracy_ci_low=low, accuracy_ci_high=high, ci_method="seeds+examples")
    elif acc.size > 1:
        _, low, high = bootstrap_ci_from_accuracies(acc, None, n_boot, level, rng_seed)
        out.update(accuracy_ci_low=low, accuracy_ci_high=high, ci_method="seeds")
    return out


def _balanced_stats(rows: pd.DataFrame, n_boot: int, level: float, rng_seed: int) -> dict[str, Any]:
    nan = math.nan
    out: dict[str, Any] = dict(
        balanced_accuracy_mean=nan,
        balanced_accuracy_std=nan,
        balanced_accuracy_ci_low=nan,
        balanced_accuracy_ci_high=nan,
    )
    if rows.empty or "balanced_accuracy" not in rows.columns:
        return out
    bacc = rows["balanced_accuracy"].dropna().to_numpy(dtype=np.float64)
    if bacc.size == 0:
        return out
    mean, low, high = bootstrap_ci_from_accuracies(bacc, None, n_boot, level, rng_seed)
    out.update(
        balanced_accuracy_mean=mean,
        balanced_accuracy_std=float(bacc.std(ddof=1)) if bacc.size > 1 else nan,
        balanced_accuracy_ci_low=low,
        balanced_accuracy_ci_high=high,
    )
    return out


def row_difference(
    a: pd.DataFrame, b: pd.DataFrame, n_boot: int = 2000, level: float = 0.95, rng_seed: int = 0
) -> tuple[float, float, float]:
    """Mean accuracy of rows ``a`` minus rows ``b`` with a 95 % interval, paired over test examples where both sides
    store ``correct`` vectors: the difference ``transfer_gain`` computes, for any two cells a caller chooses (the
    report's text section compares MiniLM strategies with TF-IDF, not only with the best baseline)."""
    return _row_difference(a, b, n_boot, level, rng_seed)


def _row_difference(
    a: pd.DataFrame, b: pd.DataFrame, n_boot: int, level: float, rng_seed: int
) -> tuple[float, float, float]:
    """``difference_ci`` on two groups of rows, using the best evidence both sides have."""
    va, vb = _correct_vectors(a), _correct_vectors(b)
    if va is not None and vb is not None:
        return difference_ci(va, vb, n_boot, level, rng_seed)
    sa, sb = _accuracy_samples(a), _accuracy_samples(b)
    mean = float(a["accuracy"].mean() - b["accuracy"].mean())
    _check_boot(n_boot, level)
    rng = np.random.default_rng(rng_seed)
    if sa is not None and sb is not None:
        reps = _replicates(*sa, n_boot, rng) - _replicates(*sb, n_boot, rng)
    elif len(a) > 1 and len(b) > 1:
        acc_a = a["accuracy"].to_numpy(dtype=np.float64)
        acc_b = b["accuracy"].to_numpy(dtype=np.float64)
        ra = acc_a[rng.integers(0, acc_a.size, size=(n_boot, acc_a.size))].mean(axis=1)
        rb = acc_b[rng.integers(0, acc_b.size, size=(n_boot, acc_b.size))].mean(axis=1)
        reps = ra - rb
    else:
        return mean, math.nan, math.nan
    low, high = _percentiles(reps, level)
    return mean, low, high


def _norm_key(key: Any) -> tuple[Any, ...]:
    """Group keys as plain tuples with NaN made comparable, so lookups across groupbys match."""
    key = key if isinstance(key, tuple) else (key,)
    return tuple(None if (np.ndim(k) == 0 and pd.isna(k)) else k for k in key)
