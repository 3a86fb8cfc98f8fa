"""How much better or worse each (strategy, backbone) does than the others, as a function of a dataset's traits.

The advisor ranks options by their **relative accuracy**: a measured cell (dataset, n_images, image_size) has a
level ``a_c`` (how hard the dataset is at that size) and each option an effect ``b_o``, ``accuracy = a_c + b_o``
(two-way fixed effects). Only the effects matter for the ranking, and fitting the two together means a cell in which
an option was not measured (the CPU grid caps full fine-tuning at 1000 images; the shift ladder never runs it)
does not bias the others' effects, as "accuracy minus the cell's mean" or "minus the cell's best" would.

- **Global effects**: the effects fitted on every measured cell, each base dataset weighing the same (a dataset and
  its shift-ladder levels share one vote: they are one source of images, and the advisor has to generalise to new
  sources).
- **Local effects for a query**: the same fit with every cell weighted by a Gaussian kernel of its trait distance to
  the query (``DISTANCE_WEIGHTS``, ``bandwidth``), shrunk towards the global effects with a prior worth
  ``shrinkage`` cells (ridge towards the global effects). Far from every measured cell the local effects are the
  global ones; an infinite bandwidth *is* the global ranking.
- **The shrinkage is estimated, not tuned** (empirical Bayes, method of moments): the noise variance of one cell's
  seed mean divided by the variance of the cells' real deviations from the global effects (their residual variance
  minus that noise). Noisy seeds and small deviations pull hard towards the global ranking; clean, consistent
  deviations are followed.
- **The bandwidth is chosen by an inner leave-one-dataset-out** (``select``) on the data the advisor is fitted on,
  never by the score it is evaluated with: each base dataset is held out in turn, the held-out cells' domain gaps
  are recomputed with a gap unit measured without it, every candidate (``BANDWIDTHS``: the global ranking, one
  distance unit, half of one) is fitted on the rest, shrinkage estimate included, and scored by the held-out cells'
  regret (best measured accuracy minus that of the candidate's best-ranked measured option). The rule is the
  one-standard-error rule, paired: the simplest candidate (widest kernel first) whose excess inner regret over the
  best candidate's, cell by cell, is within one standard error of that difference (clustered by held-out dataset:
  a dataset's cells share its quirks). Paired, because every candidate is scored on the same cells; one standard
  error, because regret differences between candidates are mostly seed noise on a handful of datasets, so picking
  the minimum would fit that noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from advisor.data import NATURAL, gap_scales

GLOBAL = math.inf
"""The bandwidth of the global ranking: every measured cell weighs the same whatever the query's traits."""

DISTANCE_WEIGHTS: dict[str, float] = {"log2_n": 1.0, "log2_gap": 1.0, "log2_classes": 0.5, "log2_size": 0.5,
                                      "domain": 0.5}  # fmt: skip
"""Evidence distance: one doubling of the training-set size (or of the domain gap) costs 1; another domain 0.5."""

BANDWIDTHS: tuple[float, ...] = (GLOBAL, 1.0, 0.5)
"""Candidate bandwidths (trait-distance units), simplest (widest) first: one ranking for all datasets, one distance
unit (a doubling of the training-set size or of the domain gap), half of one."""

DEFAULT_BANDWIDTH = 1.0
"""Used when there are too few base datasets to hold one out (fewer than 2): one distance unit."""

SHRINKAGE_RANGE = (1e-3, 100.0)
"""Bounds of the estimated shrinkage (in cells): never exactly the raw local fit, never exactly the global one."""

RULES = ("1se", "min")
KEYS = ["dataset", "n_images", "image_size"]


# ---------------------------------------------------------------------------------------------------- traits


def trait_defaults(frame: pd.DataFrame) -> dict[str, Any]:
    """Typical values for unknown traits, learned from the study's rows (per domain for the gap)."""
    per_dataset = frame.drop_duplicates(["dataset", "image_size"])
    gaps = per_dataset.dropna(subset=["gap"])
    domain_gap = {str(d): float(g["gap"].median()) for d, g in gaps.groupby("domain")}
    far = gaps[gaps["domain"] != NATURAL]["gap"]
    default_gap = float(far.median()) if len(far) else (float(gaps["gap"].median()) if len(gaps) else 1.0)
    classes = per_dataset["n_classes"].dropna()
    return {"domain_gap": domain_gap, "default_gap": default_gap,
            "default_classes": int(round(float(classes.median()))) if len(classes) else 2,
            "default_size": int(frame["image_size"].mode().iloc[0])}  # fmt: skip


def with_features(frame: pd.DataFrame, defaults: dict[str, Any]) -> pd.DataFrame:
    """Unknown traits filled with ``defaults``, plus the log features the models read."""
    out = frame.copy()
    out["n_classes"] = out["n_classes"].fillna(defaults["default_classes"])
    by_domain = out["domain"].map(defaults["domain_gap"]).astype(float)
    out["gap"] = out["gap"].astype(float).fillna(by_domain).fillna(defaults["default_gap"])
    out["imbalance"] = out["imbalance"].astype(float).fillna(1.0 / out["n_classes"].astype(float))
    out["log2_n"] = np.log2(out["n_images"].astype(float))
    out["log2_classes"] = np.log2(out["n_classes"].astype(float))
    return out


def gaps_with_scales(similarity: pd.DataFrame | None, scales: dict[tuple[str, int], float]) -> pd.DataFrame:
    """Per (dataset, image size): the relative gap in the given units, averaged over the backbones with a unit.

    ``advisor.data.relative_gaps`` with the units passed in rather than taken from the same table, so that a
    held-out dataset's gap is expressed in the units of the datasets the advisor was fitted on.
    """
    columns = ["dataset", "image_size", "gap"]
    if similarity is None or similarity.empty or not scales or "frechet_distance" not in similarity.columns:
        return pd.DataFrame(columns=columns)
    ok = similarity.dropna(subset=["frechet_distance", "backbone", "image_size"]).copy()
    ok["unit"] = [scales.get((str(b), int(s)), math.nan) for b, s in zip(ok["backbone"], ok["image_size"], strict=True)]
    ok = ok.dropna(subset=["unit"])
    if ok.empty:
        return pd.DataFrame(columns=columns)
    ok["gap"] = ok["frechet_distance"] / ok["unit"]
    ok["image_size"] = ok["image_size"].astype(int)
    return ok.groupby(["dataset", "image_size"], as_index=False)["gap"].mean()


def similarity_groups(similarity: pd.DataFrame) -> pd.Series:
    """The base dataset of every similarity row (a shift-ladder level ``base@shift`` belongs to its base)."""
    return similarity["dataset"].astype(str).str.split("@").str[0]


def regap(frame: pd.DataFrame, similarity: pd.DataFrame | None, train_groups: Sequence[str]) -> pd.DataFrame:
    """``frame`` with its ``gap`` recomputed in units measured on ``train_groups``' similarity rows only."""
    if similarity is None or similarity.empty or "dataset" not in similarity.columns:
        return frame
    scales = gap_scales(similarity[similarity_groups(similarity).isin(set(train_groups))])
    gaps = gaps_with_scales(similarity, scales)
    out = frame.drop(columns=["gap"])
    if gaps.empty:
        return out.assign(gap=np.nan)
    return out.merge(gaps, on=["dataset", "image_size"], how="left")


# ---------------------------------------------------------------------------------------------------- distances


def distance_matrix(queries: pd.DataFrame, cells: pd.DataFrame) -> np.ndarray:
    """(n_queries, n_cells) trait distances with ``DISTANCE_WEIGHTS`` (frames carry ``with_features`` columns)."""
    w = DISTANCE_WEIGHTS

    def col(frame: pd.DataFrame, name: str) -> np.ndarray:
        return frame[name].to_numpy(dtype=float)

    def gap(frame: pd.DataFrame) -> np.ndarray:
        return np.log2(np.clip(col(frame, "gap"), 0.05, None))

    d = w["log2_n"] * np.abs(col(queries, "log2_n")[:, None] - col(cells, "log2_n")[None, :])
    d += w["log2_gap"] * np.abs(gap(queries)[:, None] - gap(cells)[None, :])
    d += w["log2_classes"] * np.abs(col(queries, "log2_classes")[:, None] - col(cells, "log2_classes")[None, :])
    size_q, size_c = np.log2(col(queries, "image_size")), np.log2(col(cells, "image_size"))
    d += w["log2_size"] * np.abs(size_q[:, None] - size_c[None, :])
    d += w["domain"] * (queries["domain"].to_numpy()[:, None] != cells["domain"].to_numpy()[None, :])
    return d


# ---------------------------------------------------------------------------------------------------- cell table


@dataclass
class CellTable:
    """The measured cells: one row of traits per cell and the seed-mean accuracy of every option in it (NaN = not
    measured or only degenerate runs)."""

    cells: pd.DataFrame
    accuracy: np.ndarray
    options: list[tuple[str, str]]
    runs: np.ndarray | None = None
    """(n_cells, n_options) runs (seeds) behind each mean; 0 = not measured."""

    @property
    def measured(self) -> np.ndarray:
        return ~np.isnan(self.accuracy)

    @property
    def weights(self) -> np.ndarray:
        """Each base dataset weighs 1 in all: its shift-ladder levels share that weight."""
        per_group = self.cells.groupby("group")["dataset"].transform("nunique").to_numpy(dtype=float)
        return 1.0 / per_group


def cell_table(frame: pd.DataFrame, options: Sequence[tuple[str, str]]) -> CellTable:
    """Cells of a featured run frame (``with_features``; ``group`` column) with their options' mean accuracy."""
    options = list(options)
    traits = ["group", "domain", "gap", "log2_n", "log2_classes", "image_size", "imbalance"]
    cells = frame.groupby(KEYS, as_index=False, sort=True)[traits].first()
    cell_index = pd.MultiIndex.from_frame(cells[KEYS]).get_indexer(pd.MultiIndex.from_frame(frame[KEYS]))
    position = {option: j for j, option in enumerate(options)}
    option_index = np.array([position.get(o, -1) for o in zip(frame["strategy"], frame["backbone"], strict=True)])
    keep = option_index >= 0
    sums, runs = np.zeros((len(cells), len(options))), np.zeros((len(cells), len(options)))
    np.add.at(sums, (cell_index[keep], option_index[keep]), frame["accuracy"].to_numpy(dtype=float)[keep])
    np.add.at(runs, (cell_index[keep], option_index[keep]), 1.0)
    with np.errstate(invalid="ignore"):
        accuracy = np.where(runs > 0, sums / np.maximum(runs, 1), np.nan)
    return CellTable(cells=cells, accuracy=accuracy, options=options, runs=runs)


# ---------------------------------------------------------------------------------------------------- the model


class RelativeAccuracy:
    """Two-way fixed effects (cell level + option effect), kernel-local and shrunk towards the global effects.

    ``predict`` gives, per query and option, the expected effect (accuracy relative to an average option) and its
    variance: the kernel-weighted spread of the option's residuals (shrunk towards its global spread) plus the
    seed-to-seed variance of a single run.
    """

    def __init__(self, bandwidth: float = DEFAULT_BANDWIDTH, shrinkage: float | str = "auto") -> None:
        self.bandwidth = float(bandwidth)
        self.shrinkage = shrinkage

    def fit(self, table: CellTable, noise_var: float = 0.0) -> RelativeAccuracy:
        self.table = table
        y, m = np.nan_to_num(table.accuracy), table.measured
        n_opt = y.shape[1]
        # per cell: the centring projector on its measured options, so that a_c drops out of the fit
        counts = m.sum(1)
        self._gram = np.zeros((len(y), n_opt, n_opt))
        self._rhs = np.zeros((len(y), n_opt))
        for c in range(len(y)):
            idx = np.flatnonzero(m[c])
            if len(idx) < 2:  # one option alone says nothing about relative accuracy
                continue
            p = np.eye(len(idx)) - 1.0 / len(idx)
            self._gram[c][np.ix_(idx, idx)] = p
            self._rhs[c, idx] = p @ y[c, idx]
        self._informative = counts >= 2
        w = table.weights * self._informative
        gram = np.einsum("c,cij->ij", w, self._gram) + np.ones((n_opt, n_opt)) / n_opt + 1e-9 * np.eye(n_opt)
        self.global_ = np.linalg.solve(gram, w @ self._rhs)  # effects summing to 0
        self.levels_ = self._levels(self.global_[None, :])[0]
        resid = np.where(m, y - self.levels_[:, None] - self.global_[None, :], 0.0)
        wm = w[:, None] * m
        self.prior_var_ = np.where(wm.sum(0) > 0, (wm * resid**2).sum(0) / np.maximum(wm.sum(0), 1e-12), 0.0)
        self.noise_var = float(noise_var)
        self.tau = self._estimate_shrinkage(resid, wm, counts) if self.shrinkage == "auto" else float(self.shrinkage)
        return self

    def _estimate_shrinkage(self, resid: np.ndarray, wm: np.ndarray, counts: np.ndarray) -> float:
        """Noise variance of a cell's seed mean / variance of the cells' real deviations from the global effects."""
        lo, hi = SHRINKAGE_RANGE
        if not wm.sum():
            return hi
        dof = (counts / np.maximum(counts - 1, 1))[:, None]  # centring within a cell of k options costs 1/k
        observed = float((wm * dof * resid**2).sum() / wm.sum())
        runs = self.table.runs if self.table.runs is not None else np.ones_like(resid)
        cell_noise = float((wm * self.noise_var / np.maximum(runs, 1)).sum() / wm.sum())
        real = observed - cell_noise
        if real <= cell_noise / hi:
            return hi
        return float(np.clip(cell_noise / real, lo, hi))

    def _levels(self, effects: np.ndarray) -> np.ndarray:
        """(n_queries, n_cells) cell levels a_c given per-query effects: mean over measured of y - b."""
        y, m = np.nan_to_num(self.table.accuracy), self.table.measured
        diff = (y[None, :, :] - effects[:, None, :]) * m[None, :, :]
        return diff.sum(2) / np.maximum(m.sum(1), 1)[None, :]

    def kernel(self, queries: pd.DataFrame) -> np.ndarray:
        """(n_queries, n_cells) cell weights for each query (dataset weight x Gaussian kernel of the distance)."""
        w = self.table.weights * self._informative
        if math.isinf(self.bandwidth):
            return np.tile(w, (len(queries), 1))
        d = distance_matrix(queries, self.table.cells)
        return w[None, :] * np.exp(-0.5 * (d / self.bandwidth) ** 2)

    def predict(self, queries: pd.DataFrame, options: Sequence[tuple[str, str]] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Mean and variance of each option's effect, shape (n_queries, n_options), in ``options`` order."""
        k = self.kernel(queries)
        n_opt = len(self.global_)
        if math.isinf(self.bandwidth):
            effects = np.tile(self.global_, (len(queries), 1))
        else:
            tau = max(self.tau, 1e-9)
            gram = np.einsum("qc,cij->qij", k, self._gram) + tau * np.eye(n_opt)[None, :, :]
            rhs = k @ self._rhs + tau * self.global_[None, :]
            effects = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
        y, m = np.nan_to_num(self.table.accuracy), self.table.measured
        levels = self._levels(effects)
        resid = (y[None, :, :] - levels[:, :, None] - effects[:, None, :]) * m[None, :, :]
        km = k[:, :, None] * m[None, :, :]
        tau = self.tau if not math.isinf(self.bandwidth) else 0.0
        spread = ((km * resid**2).sum(1) + tau * self.prior_var_[None, :]) / np.maximum(km.sum(1) + tau, 1e-12)
        var = spread + self.noise_var
        if options is not None:
            index = [self.table.options.index(o) for o in options]
            effects, var = effects[:, index], var[:, index]
        return effects, var


# ---------------------------------------------------------------------------------------------------- selection


def candidates(bandwidth: float | str) -> list[float]:
    """The bandwidths to choose from, simplest first; one when it is fixed."""
    return list(BANDWIDTHS) if bandwidth == "auto" else [float(bandwidth)]


def held_out_regret(model: RelativeAccuracy, held: CellTable) -> np.ndarray:
    """Per held-out cell: best measured accuracy minus that of the model's best-ranked measured option."""
    effects, _ = model.predict(held.cells, held.options)
    scores = np.where(held.measured, effects, -np.inf)
    pick = scores.argmax(1)
    best = np.nanmax(held.accuracy, 1)
    return best - held.accuracy[np.arange(len(pick)), pick]


def select(
    frame: pd.DataFrame,
    similarity: pd.DataFrame | None,
    options: Sequence[tuple[str, str]],
    bandwidths: Sequence[float],
    shrinkage: float | str = "auto",
    rule: str = "1se",
    noise_var: float = 0.0,
) -> dict[str, Any]:
    """Choose the bandwidth among ``bandwidths`` by leave-one-dataset-out on ``frame`` (a prepared run frame with a
    ``group`` column, not yet featured). Returns the choice and every candidate's inner regret."""
    groups = sorted(frame["group"].unique())
    if len(bandwidths) == 1:
        return {"bandwidth": bandwidths[0], "rule": "fixed", "inner_datasets": 0, "candidates": []}
    if len(groups) < 2:
        return {"bandwidth": DEFAULT_BANDWIDTH, "rule": "default (too few datasets to hold one out)",
                "inner_datasets": len(groups), "candidates": []}  # fmt: skip
    regrets: dict[float, list[np.ndarray]] = {bw: [] for bw in bandwidths}
    cell_groups: list[str] = []
    for group in groups:
        train_groups = [g for g in groups if g != group]
        fold = regap(frame, similarity, train_groups)
        is_train = (fold["group"] != group).to_numpy()
        defaults = trait_defaults(fold[is_train])
        fold = with_features(fold, defaults)
        train, held = cell_table(fold[is_train], options), cell_table(fold[~is_train], options)
        keep = held.measured.sum(1) > 0
        held = CellTable(held.cells[keep].reset_index(drop=True), held.accuracy[keep], held.options)
        if not len(held.cells):
            continue
        cell_groups += [group] * len(held.cells)
        for bw in bandwidths:
            model = RelativeAccuracy(bw, shrinkage).fit(train, noise_var)
            regrets[bw].append(held_out_regret(model, held))
    labels = np.array(cell_groups)
    per_cell = {bw: np.concatenate(regrets[bw]) if regrets[bw] else np.array([np.nan]) for bw in bandwidths}
    means = np.array([float(np.mean(per_cell[bw])) for bw in bandwidths])
    best = int(np.nanargmin(means))
    table = []
    for bw in bandwidths:
        r, excess = per_cell[bw], per_cell[bw] - per_cell[bandwidths[best]]
        table.append({"bandwidth": bw, "inner_regret": float(np.mean(r)), "inner_se": _clustered_se(r, labels),
                      "excess": float(np.mean(excess)), "excess_se": _clustered_se(excess, labels)})  # fmt: skip
    # "1se": the simplest candidate not worse than the best by more than one standard error of the difference
    within = next(i for i, t in enumerate(table) if t["excess"] <= t["excess_se"] + 1e-12)
    chosen = best if rule == "min" else within
    return {"bandwidth": bandwidths[chosen], "rule": rule, "inner_datasets": len(groups), "candidates": table}


def _clustered_se(values: np.ndarray, labels: np.ndarray) -> float:
    """Standard error of the mean of ``values`` with observations clustered by ``labels`` (one per dataset)."""
    if len(values) != len(labels) or len(set(labels)) < 2:
        return 0.0
    dev = values - values.mean()
    sums = np.array([dev[labels == g].sum() for g in np.unique(labels)])
    k = len(sums)
    return float(np.sqrt(k / (k - 1) * (sums**2).sum()) / len(values))
