"""Advisor v2: expected accuracy of every option *relative to the best measured probe* of the user's own images.

The strongest evidence about a dataset is how well each frozen backbone already separates its classes (the probes
of ``advisor.probes``: cross-validated linear probe, kNN, LogME on the N training images). The study adds how much
training more of the network gains over that, as a function of the traits. The model, small enough to explain:

- a study cell is (dataset, n_images, image_size); its probes are averaged over the cell's seeds, per backbone;
  ``best_probe`` is the best backbone's cross-validated linear-probe accuracy;
- **frozen options** (``freeze_level`` 3: the linear probe and feature extraction) are the probe itself:
  expected accuracy = that backbone's measured probe + the strategy's offset (a ridge regression of
  accuracy - probe on log2 n, log2 classes and the relative domain gap). One offset per strategy, so the frozen
  options are **ranked by their measured probe**;
- **every other option** (strategy x backbone) gets a ridge regression (standardised features, ``alpha``) of its
  gain, accuracy - ``best_probe``, on log2 n, log2 classes, the relative gap, ``best_probe``, and its backbone's
  probe and LogME relative to the best backbone's (the probe ranking as a feature). Coefficients are readable
  (``coefficients``); an option measured in fewer than ``min_cells`` cells is not modelled;
- **intervals** are the quantiles of the residuals of an inner leave-one-dataset-out on the training datasets
  (each base dataset held out in turn, models refitted without it), separately for frozen and trained options
  (their errors differ by an order of magnitude): a stated 80 % interval is the 10th-90th percentile of the
  held-out residuals, so it covers about 80 % of held-out cells if the new dataset is like the training ones.
  ``advisor evaluate`` reports the coverage actually reached on held-out datasets (nested: the outer held-out
  dataset is in neither the fit nor the calibration);
- an option whose training-set sizes in the study do not include the query's n (below the smallest or above the
  largest n it was measured at) is **extrapolated**: flagged, and ranked after every option that is not.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.linear_model import Ridge

from advisor.data import AdvisorError, prepare
from advisor.model import freeze_level
from study.engine.store import NO_BACKBONE

TRAITS = ["log2_n", "log2_classes", "gap"]
GAIN_FEATURES = [*TRAITS, "best_probe", "probe_vs_best", "logme_vs_best"]
CELL = ["dataset", "n_images", "image_size"]
FROZEN = 3
ALPHAS = (100.0, 10.0, 1.0)
"""Candidate ridge penalties, simplest (strongest) first."""


def _frozen(strategy: str) -> bool:
    return freeze_level(strategy) == FROZEN


class GainModel(BaseEstimator):
    """Expected accuracy of each (strategy, backbone) from the traits and the measured probes (see the module).

    Parameters
    ----------
    alpha : float or "auto"
        Ridge penalty on standardised features (default 1, fixed a priori: a mild penalty, nothing to select, so
        nothing to nest). ``"auto"``: chosen among ``ALPHAS`` by the inner
        leave-one-dataset-out (regret of the held-out cells' picks), one-standard-error rule, strongest penalty
        (simplest model) first, so ``advisor evaluate`` stays nested; ``alpha_`` and ``selection_`` say what won.
        Not the default: on the constructed study (tests/test_advisor_v2.py) with 5 inner datasets the inner regrets
        of the candidates were within each other's noise and the rule picked the over-shrunk 100 in 2 of 6 folds.
    interval : float
        Stated coverage of the intervals (0.8 = the 10th to 90th percentile of held-out residuals).
    min_cells : int
        Fewest training cells an option needs to be modelled.
    """

    def __init__(self, alpha: float | str = 1.0, interval: float = 0.8, min_cells: int = 6) -> None:
        self.alpha = alpha
        self.interval = interval
        self.min_cells = min_cells

    # -- fitting -----------------------------------------------------------------------------------------------

    def fit(self, runs: pd.DataFrame, similarity: pd.DataFrame | None, probes: pd.DataFrame) -> GainModel:
        """Fit on the runs and their per-cell probes (``advisor.probes.cell_probes``), then calibrate intervals."""
        if not 0 < self.interval < 1:
            raise AdvisorError(f"interval must be in (0, 1), got {self.interval!r}")
        if probes is None or probes.empty:
            raise AdvisorError("the gain model needs the study's cell probes; run advisor probes --results SOURCE")
        table = cell_table(prepare(runs, similarity), probes)
        if table.empty:
            raise AdvisorError("no study cell has both runs and probes; run advisor probes --results SOURCE")
        self.defaults_ = {"gap": float(table["gap"].median()) if table["gap"].notna().any() else 1.0,
                          "log2_classes": float(table["log2_classes"].median())}  # fmt: skip
        candidates = ALPHAS if self.alpha == "auto" else (float(self.alpha),)
        inner = {a: self._inner(table, a) for a in candidates}
        self.alpha_, self.selection_ = _one_se(inner) if len(candidates) > 1 else (candidates[0], {})
        self._fit_models(table, self.alpha_)
        self.residuals_ = inner[self.alpha_][0]
        lo, hi = (1 - self.interval) / 2, 1 - (1 - self.interval) / 2
        self.bounds_: dict[bool, tuple[float, float]] = {}
        for frozen in (True, False):
            r = self.residuals_[self.residuals_["frozen"] == frozen]["residual"]
            if len(r) < 10:  # too few for its own quantiles: all residuals
                r = self.residuals_["residual"]
            self.bounds_[frozen] = (float(r.quantile(lo)), float(r.quantile(hi))) if len(r) else (-0.1, 0.1)
        self.n_ranges_ = table.groupby(["strategy", "backbone"])["n_images"].agg(["min", "max"]).to_dict("index")
        self.n_cells_ = int(table[CELL].drop_duplicates().shape[0])
        return self

    def _fit_models(self, table: pd.DataFrame, alpha: float) -> None:
        self.models_: dict[Any, Any] = {}
        for strategy, rows in table[table["frozen"]].groupby("strategy"):
            if rows[CELL].drop_duplicates().shape[0] >= self.min_cells:
                self.models_[strategy] = _Linear(rows[TRAITS], rows["accuracy"] - rows["probe"], alpha)
        for option, rows in table[~table["frozen"]].groupby(["strategy", "backbone"]):
            if len(rows) >= self.min_cells:
                self.models_[option] = _Linear(rows[GAIN_FEATURES], rows["accuracy"] - rows["best_probe"], alpha)
        self.options_ = sorted({(s, b) for s, b in zip(table["strategy"], table["backbone"], strict=True)
                                if (s if _frozen(s) else (s, b)) in self.models_})  # fmt: skip

    def _inner(self, table: pd.DataFrame, alpha: float) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(held-out residuals, held-out cells' pick regret) of a leave-one-dataset-out inside the training data."""
        residuals, regrets = [], []
        groups = sorted(table["group"].unique())
        if len(groups) < 3:
            return pd.DataFrame(columns=["frozen", "residual"]), pd.DataFrame(columns=["group", "regret"])
        for group in groups:
            inner = GainModel(alpha, self.interval, self.min_cells)
            inner.defaults_ = self.defaults_
            inner._fit_models(table[table["group"] != group], alpha)
            held = table[table["group"] == group]
            held = held.assign(pred=inner._predict_rows(held))
            ok = held.dropna(subset=["pred"])
            residuals.append(pd.DataFrame({"frozen": ok["frozen"], "residual": ok["accuracy"] - ok["pred"]}))
            for _, cell in ok.groupby(CELL):
                pick = cell.loc[cell["pred"].idxmax(), "accuracy"]
                regrets.append({"group": group, "regret": float(cell["accuracy"].max() - pick)})
        return pd.concat(residuals, ignore_index=True), pd.DataFrame(regrets)

    # -- predicting --------------------------------------------------------------------------------------------

    def _predict_rows(self, rows: pd.DataFrame) -> pd.Series:
        """Expected accuracy of rows of a cell table (NaN for an option without a model)."""
        out = np.full(len(rows), np.nan)
        traits, gains = rows[TRAITS].to_numpy(float), rows[GAIN_FEATURES].to_numpy(float)
        probe, best = rows["probe"].to_numpy(float), rows["best_probe"].to_numpy(float)
        for key, at in rows.groupby(["strategy", "backbone"]).indices.items():
            frozen = _frozen(key[0])
            model = self.models_.get(key[0] if frozen else key)
            if model is not None:
                out[at] = (probe[at] + model.predict(traits[at])) if frozen else (best[at] + model.predict(gains[at]))
        return pd.Series(out, index=rows.index)

    def predict(self, traits: dict[str, Any], probes: pd.DataFrame) -> pd.DataFrame:
        """Every modelled option for one dataset: ``accuracy``, ``low``, ``high``, ``extrapolated``, best first.

        ``traits``: ``n_images`` and optionally ``n_classes``, ``gap`` (relative); ``probes``: one row per backbone
        with ``linear_probe_accuracy`` and ``logme`` (``advisor.probes.folder_probes``). Options on a backbone
        without probes are left out. Options that are not extrapolated come first.
        """
        if probes is None or probes.empty:
            raise AdvisorError("no probes of the images: measure the folder (advisor recommend --data-dir)")
        n = int(traits["n_images"])
        k = traits.get("n_classes")
        gap = traits.get("gap")
        base = {"n_images": n, "log2_n": math.log2(n),
                "log2_classes": math.log2(k) if k else self.defaults_["log2_classes"],
                "gap": float(gap) if gap is not None and gap == gap else self.defaults_["gap"]}  # fmt: skip
        by_backbone = probes.groupby("backbone")[["linear_probe_accuracy", "logme"]].mean()
        best_probe = float(by_backbone["linear_probe_accuracy"].max())
        best_logme = float(by_backbone["logme"].max())
        rows = []
        for strategy, backbone in self.options_:
            if backbone != NO_BACKBONE and backbone not in by_backbone.index:
                continue
            probe = float(by_backbone.loc[backbone, "linear_probe_accuracy"]) if backbone != NO_BACKBONE else best_probe
            lm = float(by_backbone.loc[backbone, "logme"]) if backbone != NO_BACKBONE else best_logme
            rows.append({**base, "strategy": strategy, "backbone": backbone, "frozen": _frozen(strategy),
                         "probe": probe, "best_probe": best_probe, "probe_vs_best": probe - best_probe,
                         "logme_vs_best": lm - best_logme})  # fmt: skip
        table = pd.DataFrame(rows)
        if table.empty:
            raise AdvisorError("none of the probed backbones is in the study's results; probe one the study ran")
        table["accuracy"] = self._predict_rows(table).clip(0.0, 1.0)
        table["low"] = [max(0.0, a + self.bounds_[f][0]) for a, f in zip(table["accuracy"], table["frozen"],
                                                                          strict=True)]  # fmt: skip
        table["high"] = [min(1.0, a + self.bounds_[f][1]) for a, f in zip(table["accuracy"], table["frozen"],
                                                                           strict=True)]  # fmt: skip
        table["extrapolated"] = [not (self.n_ranges_[(s, b)]["min"] <= n <= self.n_ranges_[(s, b)]["max"])
                                 for s, b in zip(table["strategy"], table["backbone"], strict=True)]  # fmt: skip
        table = table.sort_values(["extrapolated", "accuracy", "strategy", "backbone"],
                                  ascending=[True, False, True, True], kind="stable")  # fmt: skip
        return table[["strategy", "backbone", "accuracy", "low", "high", "extrapolated", "probe", "frozen"]
                     ].reset_index(drop=True)  # fmt: skip

    def coefficients(self) -> pd.DataFrame:
        """Per model: the ridge coefficients in accuracy (fraction) per standard deviation of each feature."""
        rows = []
        for key, model in self.models_.items():
            names = TRAITS if isinstance(key, str) else GAIN_FEATURES
            rows.append({"option": key if isinstance(key, str) else "/".join(key), "intercept": model.intercept,
                         **dict(zip(names, model.coef, strict=True))})  # fmt: skip
        return pd.DataFrame(rows)


def _one_se(inner: dict[float, tuple[pd.DataFrame, pd.DataFrame]]) -> tuple[float, dict[str, Any]]:
    """The first (simplest) alpha whose inner mean regret is within one standard error (over held-out datasets)
    of the best one's."""
    stats = {}
    for alpha, (_, regrets) in inner.items():
        per_group = regrets.groupby("group")["regret"].mean() if len(regrets) else pd.Series(dtype=float)
        se = float(per_group.std(ddof=1) / math.sqrt(len(per_group))) if len(per_group) > 1 else 0.0
        stats[alpha] = {"inner_regret": float(regrets["regret"].mean()) if len(regrets) else math.inf, "se": se}
    best = min(stats, key=lambda a: stats[a]["inner_regret"])
    limit = stats[best]["inner_regret"] + stats[best]["se"]
    chosen = next(a for a in inner if stats[a]["inner_regret"] <= limit)
    return chosen, {"rule": "1se", "candidates": stats}


class _Linear:
    """scikit-learn's ``Ridge`` on standardised features, kept as plain arrays so predicting is one dot product."""

    def __init__(self, x: pd.DataFrame | np.ndarray, y: pd.Series | np.ndarray, alpha: float) -> None:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self.mean = x.mean(axis=0)
        scale = x.std(axis=0)
        self.scale = np.where(scale > 0, scale, 1.0)
        ridge = Ridge(alpha=alpha, solver="cholesky").fit((x - self.mean) / self.scale, y)
        self.coef, self.intercept = ridge.coef_.astype(float), float(ridge.intercept_)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept


def cell_table(frame: pd.DataFrame, probes: pd.DataFrame) -> pd.DataFrame:
    """One row per (study cell, option) with its seed-mean accuracy, the traits and the cell's probes."""
    acc = frame.groupby([*CELL, "strategy", "backbone"], as_index=False).agg(
        accuracy=("accuracy", "mean"), group=("group", "first"), n_classes=("n_classes", "first"),
        gap=("gap", "first"))  # fmt: skip
    p = probes.groupby([*CELL, "backbone"], as_index=False)[["linear_probe_accuracy", "logme"]].mean()
    best = p.groupby(CELL, as_index=False).agg(best_probe=("linear_probe_accuracy", "max"),
                                               best_logme=("logme", "max"))  # fmt: skip
    table = acc.merge(best, on=CELL, how="inner")
    table = table.merge(p.rename(columns={"linear_probe_accuracy": "probe"}), on=[*CELL, "backbone"], how="left")
    none = table["backbone"] == NO_BACKBONE
    table.loc[none, "probe"] = table.loc[none, "best_probe"]
    table.loc[none, "logme"] = table.loc[none, "best_logme"]
    table = table.dropna(subset=["probe"])
    table["probe_vs_best"] = table["probe"] - table["best_probe"]
    table["logme_vs_best"] = table["logme"] - table["best_logme"]
    table["log2_n"] = np.log2(table["n_images"].astype(float))
    k = table["n_classes"].astype(float)
    table["log2_classes"] = np.log2(k.fillna(k.median() if k.notna().any() else 2.0))
    table["gap"] = table["gap"].astype(float).fillna(table["gap"].median() if table["gap"].notna().any() else 1.0)
    table["frozen"] = [_frozen(s) for s in table["strategy"]]
    return table.reset_index(drop=True)
