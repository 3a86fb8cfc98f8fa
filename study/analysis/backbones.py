"""Does ImageNet accuracy predict transfer accuracy here? The backbone axis of the results, per dataset.

Kornblith, Shlens & Le (2019, "Do Better ImageNet Models Transfer Better?") found that a backbone's ImageNet top-1
predicts its transfer accuracy (r = 0.99 with fixed features, 0.96 fine-tuned, 224 px, 12 datasets). This module
tests that claim at the study's resolutions and training-set sizes:

- ``backbone_table``: per (dataset, size, image size, strategy) and backbone, the mean test accuracy over seeds with
  its 95 % interval, the backbone's published ImageNet top-1 (the registry record's ``imagenet_top1``) and its cost
  as measured by the rows (total parameters, CPU latency per image).
- ``rank_correlations``: per (dataset, size, image size, strategy), the Spearman rank correlation between ImageNet
  top-1 and transfer accuracy over the backbones measured there, with a 95 % percentile-bootstrap interval that
  resamples **seeds and test examples** (paired across backbones when they share seeds and test set, as the
  study's cells do: the test split is fixed per dataset), and an exact permutation p-value. With fewer than
  ``MIN_BACKBONES`` backbones there is no correlation, and the row says so.
- ``mean_rank_correlations``: per (size, image size, strategy), the mean of the per-dataset correlations with a
  bootstrap interval that resamples **datasets**.

Only pretrained strategies count (a from-scratch model's accuracy has nothing to do with ImageNet); degenerate rows
are excluded (``stats.mark_degenerate``), and backbones without a published top-1 are left out. The report's
"Backbones" section and ``python -m study.analysis`` print these same tables.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from study.analysis import stats
from study.train.strategies import strategy_or_none

MIN_BACKBONES = 3
"""Fewest backbones for which a rank correlation is reported (with two, ρ is ±1 whatever the data)."""

GROUP_KEYS: tuple[str, ...] = ("dataset", "n_images", "image_size", "strategy")
"""One correlation per group: the backbones measured on one dataset, size, input size and strategy."""

EXACT_PERMUTATIONS = 8
"""Up to this many backbones the p-value enumerates every permutation (8! = 40320); above, scipy's t approximation."""

_TABLE_COLUMNS = [*GROUP_KEYS, "backbone", "imagenet_top1", "accuracy", "ci_low", "ci_high", "n_seeds",
                  "total_params", "latency_ms"]  # fmt: skip
_CORR_COLUMNS = [*GROUP_KEYS, "n_backbones", "backbones", "rho", "rho_ci_low", "rho_ci_high", "p", "ci_method", "note"]
_MEAN_COLUMNS = ["n_images", "image_size", "strategy", "n_datasets", "mean_rho", "ci_low", "ci_high", "datasets"]


def imagenet_top1(backbone: str) -> float | None:
    """A backbone's published ImageNet top-1 (%) from its registry record; None when unregistered or unknown."""
    from study.zoo.backbones import BACKBONES

    if backbone not in BACKBONES.list():
        return None
    top1 = BACKBONES.get(backbone).imagenet_top1
    return None if top1 is None else float(top1)


def _eligible(frame: pd.DataFrame) -> pd.DataFrame:
    """Non-degenerate rows of ordinary (not pair) cells of pretrained strategies on backbones with a published
    ImageNet top-1."""
    stats._require_columns(frame, (*stats.CELL_KEYS, "accuracy"), "the backbones analysis")
    marked = stats.mark_degenerate(frame)
    good = marked[~marked["degenerate"] & ~stats.is_pair(marked)]  # pair cells: another question (#20)
    pretrained = good["strategy"].map(lambda s: bool(getattr(strategy_or_none(str(s)), "pretrained", False)))
    good = good.loc[pretrained.astype(bool)]  # .loc: an empty mask must select rows, never columns
    top1 = {b: imagenet_top1(str(b)) for b in good["backbone"].unique()}
    good = good.assign(imagenet_top1=good["backbone"].map(top1))
    return good[good["imagenet_top1"].notna()]


def _mean_of(rows: pd.DataFrame, column: str) -> float:
    if column not in rows.columns:
        return math.nan
    values = pd.to_numeric(rows[column], errors="coerce").dropna()
    return float(values.mean()) if len(values) else math.nan


def backbone_table(frame: pd.DataFrame, n_boot: int = 2000, level: float = 0.95, rng_seed: int = 0) -> pd.DataFrame:
    """One row per group x backbone: accuracy (mean over seeds, hierarchical-bootstrap interval), ImageNet top-1,
    total parameters and CPU latency per image (means over the cell's rows)."""
    good = _eligible(frame)
    records = []
    for key, rows in good.groupby([*GROUP_KEYS, "backbone"], sort=True):
        acc = stats._accuracy_stats(rows, n_boot, level, rng_seed)
        records.append({
            **dict(zip((*GROUP_KEYS, "backbone"), key, strict=True)),
            "imagenet_top1": float(rows["imagenet_top1"].iloc[0]),
            "accuracy": acc["accuracy_mean"], "ci_low": acc["accuracy_ci_low"], "ci_high": acc["accuracy_ci_high"],
            "n_seeds": len(rows), "total_params": _mean_of(rows, "total_params"),
            "latency_ms": _mean_of(rows, "latency_ms"),
        })  # fmt: skip
    table = pd.DataFrame.from_records(records, columns=_TABLE_COLUMNS)
    return table.sort_values([*GROUP_KEYS, "imagenet_top1"]).reset_index(drop=True)


def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman's ρ (average ranks for ties); NaN when either side is constant."""
    from scipy.stats import spearmanr

    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.ptp(xa) == 0 or np.ptp(ya) == 0:
        return math.nan
    return float(spearmanr(xa, ya).statistic)


def _row_spearman(top1: npt.NDArray[np.float64], reps: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """ρ of ``top1`` with each row of ``reps`` (n_boot x backbones), vectorised; NaN for an all-tied row."""
    from scipy.stats import rankdata

    rx = rankdata(top1)
    ry = rankdata(reps, axis=1)
    rx = rx - rx.mean()
    ry = ry - ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx**2).sum()) * np.sqrt((ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ry @ rx) / np.where(denom > 0, denom, 1.0), np.nan)


def permutation_p(top1: npt.ArrayLike, accuracy: npt.ArrayLike) -> float:
    """Two-sided p-value of ρ: exact over all orderings of the accuracies (few backbones), else scipy's."""
    x, y = np.asarray(top1, dtype=float), np.asarray(accuracy, dtype=float)
    rho = spearman(x, y)
    if math.isnan(rho):
        return math.nan
    if len(y) > EXACT_PERMUTATIONS:
        from scipy.stats import spearmanr

        return float(spearmanr(x, y).pvalue)
    perms = np.array(list(itertools.permutations(y)))
    null = _row_spearman(x, perms)
    return float(np.mean(np.abs(null) >= abs(rho) - 1e-12))


def _paired_matrices(rows_by_backbone: list[pd.DataFrame]) -> list[npt.NDArray[np.int8]] | None:
    """Seeds x test examples 0/1 matrices, one per backbone, when every backbone has the same seeds and each seed
    the same number of test examples (the same test set): then replicates can resample them jointly."""
    seeds = [sorted(int(s) for s in rows["seed"]) for rows in rows_by_backbone] if all(
        "seed" in r.columns for r in rows_by_backbone) else None  # fmt: skip
    if seeds is None or any(s != seeds[0] for s in seeds):
        return None
    mats = []
    for rows in rows_by_backbone:
        vectors = stats._correct_vectors(rows.sort_values("seed"))
        if vectors is None or len({v.size for v in vectors}) != 1:
            return None
        mats.append(np.stack(vectors))
    if len({m.shape for m in mats}) != 1:
        return None
    return mats


def _paired_replicates(mats: list[npt.NDArray[np.int8]], n_boot: int, rng: np.random.Generator) -> npt.NDArray:
    """(n_boot, backbones) accuracies: each replicate draws seeds, then test examples, the same for every backbone.

    A replicate's accuracy is ``sum_s v_s sum_t w_t C[s, t]`` with ``v``/``w`` the drawn seeds'/examples' shares,
    so all replicates are two matrix products per backbone (no loop over replicates).
    """
    n_seeds, n_test = mats[0].shape
    seed_draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    v = np.stack([np.bincount(r, minlength=n_seeds) for r in seed_draws]) / n_seeds
    w = rng.multinomial(n_test, np.full(n_test, 1.0 / n_test), size=n_boot) / n_test
    return np.stack([((w @ m.T.astype(np.float64)) * v).sum(axis=1) for m in mats], axis=1)


def _independent_replicates(
    rows_by_backbone: list[pd.DataFrame], n_boot: int, rng: np.random.Generator
) -> tuple[npt.NDArray, str] | None:
    """Each backbone bootstrapped on its own (seeds and examples, or seeds only); None when nothing resamples."""
    cols = []
    methods = set()
    for rows in rows_by_backbone:
        samples = stats._accuracy_samples(rows)
        if samples is not None:
            cols.append(stats._replicates(*samples, n_boot, rng))
            methods.add("seeds+examples")
        elif len(rows) > 1:
            acc = rows["accuracy"].to_numpy(dtype=np.float64)
            cols.append(acc[rng.integers(0, acc.size, size=(n_boot, acc.size))].mean(axis=1))
            methods.add("seeds")
        else:
            return None
    method = "seeds" if "seeds" in methods else "seeds+examples"
    return np.stack(cols, axis=1), f"{method} (independent per backbone)"


def rank_correlation(
    rows: pd.DataFrame, n_boot: int = 2000, level: float = 0.95, rng_seed: int = 0
) -> dict[str, Any]:
    """ρ(ImageNet top-1, transfer accuracy) over the backbones of one group of rows, with interval and p-value."""
    per = [(str(b), g) for b, g in rows.groupby("backbone", sort=True)]
    names = [b for b, _ in per]
    out: dict[str, Any] = {"n_backbones": len(per), "backbones": ", ".join(names), "rho": math.nan,
                           "rho_ci_low": math.nan, "rho_ci_high": math.nan, "p": math.nan, "ci_method": "none",
                           "note": ""}  # fmt: skip
    if len(per) < MIN_BACKBONES:
        out["note"] = (f"only {len(per)} backbone{'s' if len(per) != 1 else ''} measured here; a rank correlation "
                       f"needs at least {MIN_BACKBONES}")  # fmt: skip
        return out
    top1 = np.array([float(g["imagenet_top1"].iloc[0]) for _, g in per])
    acc = np.array([float(g["accuracy"].mean()) for _, g in per])
    out["rho"] = spearman(top1, acc)
    out["p"] = permutation_p(top1, acc)
    if math.isnan(out["rho"]):
        out["note"] = "every backbone has the same ImageNet top-1 or the same accuracy; ρ is undefined"
        return out
    stats._check_boot(n_boot, level)
    rng = np.random.default_rng(rng_seed)
    groups = [g for _, g in per]
    mats = _paired_matrices(groups)
    if mats is not None:
        reps, method = _paired_replicates(mats, n_boot, rng), "seeds+examples (paired across backbones)"
    else:
        got = _independent_replicates(groups, n_boot, rng)
        if got is None:
            out["note"] = "one seed without per-example results: nothing to resample for an interval"
            return out
        reps, method = got
    rhos = _row_spearman(top1, reps)
    rhos = rhos[np.isfinite(rhos)]
    if rhos.size:
        out["rho_ci_low"], out["rho_ci_high"] = stats._percentiles(rhos, level)
    out["ci_method"] = method
    return out


def rank_correlations(frame: pd.DataFrame, n_boot: int = 2000, level: float = 0.95, rng_seed: int = 0) -> pd.DataFrame:
    """One row per (dataset, size, image size, pretrained strategy): ``rank_correlation`` of its backbones."""
    good = _eligible(frame)
    records = [{**dict(zip(GROUP_KEYS, key, strict=True)), **rank_correlation(rows, n_boot, level, rng_seed)}
               for key, rows in good.groupby(list(GROUP_KEYS), sort=True)]  # fmt: skip
    return pd.DataFrame.from_records(records, columns=_CORR_COLUMNS)


def mean_rank_correlations(
    correlations: pd.DataFrame, n_boot: int = 2000, level: float = 0.95, rng_seed: int = 0
) -> pd.DataFrame:
    """Per (size, image size, strategy): the mean per-dataset ρ, with an interval resampling the datasets."""
    ok = correlations.dropna(subset=["rho"])
    records = []
    for (n, size, strategy), group in ok.groupby(["n_images", "image_size", "strategy"], sort=True):
        rho = group["rho"].to_numpy(dtype=np.float64)
        low = high = math.nan
        if rho.size > 1:
            _, low, high = stats.bootstrap_ci_from_accuracies(rho, None, n_boot, level, rng_seed)
        records.append({"n_images": n, "image_size": size, "strategy": strategy, "n_datasets": int(rho.size),
                        "mean_rho": float(rho.mean()), "ci_low": low, "ci_high": high,
                        "datasets": ", ".join(sorted(group["dataset"].astype(str)))})  # fmt: skip
    return pd.DataFrame.from_records(records, columns=_MEAN_COLUMNS)


def summary_lines(correlations: pd.DataFrame, means: pd.DataFrame) -> list[str]:
    """Plain sentences for the findings: each strategy's mean ρ over datasets, and what could not be computed."""
    out = []
    for r in means.to_dict("records"):
        interval = "" if math.isnan(r["ci_low"]) else f" [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
        out.append(f"ImageNet top-1 vs transfer accuracy ({r['strategy']}, N={int(r['n_images'])}, "
                   f"{int(r['image_size'])} px): mean Spearman ρ = {r['mean_rho']:+.2f}{interval} over "
                   f"{r['n_datasets']} dataset{'s' if r['n_datasets'] != 1 else ''}.")  # fmt: skip
    most = int(correlations["n_backbones"].max()) if len(correlations) else 0
    if not len(means) and most >= 2:  # one backbone only: the backbone axis was not studied; nothing to say
        out.append(f"No dataset has {MIN_BACKBONES} or more backbones measured (at most {most}), so ImageNet top-1 "
                   "cannot be rank-correlated with transfer accuracy in these results.")  # fmt: skip
    return out

