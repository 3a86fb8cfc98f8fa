"""Advisor v2: expected accuracy of every option *relative to the best measured probe* of the user's own images.

The strongest evidence about a dataset is how well each frozen backbone already separates its classes (the probes
of ``advisor.probes``: cross-validated linear probe, kNN, LogME on the N training images). The study adds how much
training more of the network gains over that, as a function of the traits. The model, small enough to explain:

- a study cell is (dataset, n_images, image_size); its probes are averaged over the cell's seeds, per backbone,
  then shrunk towards what the study expects of each backbone by how noisy a probe on n images is
  (``ProbeShrinkage``: weight 0.2 on the measured deviation at n = 50, 0.95 at 4000 on the broad reference);
  ``best_probe`` is the best backbone's (shrunk) cross-validated linear-probe accuracy;
- **frozen options** (``freeze_level`` 3: the linear probe and feature extraction) are the probe itself:
  expected accuracy = that backbone's (shrunk) probe + the strategy's offset (a ridge regression of
  accuracy - probe on log2 n, log2 classes and the relative domain gap). One offset per strategy, so the frozen
  options are **ranked by their probe**, weighed against the backbone's record as much as n warrants;
- **every other option** (strategy x backbone) gets a ridge regression (standardised features, ``alpha``) of its
  gain, accuracy - ``best_probe``, on log2 n, log2 classes, the relative gap, ``best_probe``, and its backbone's
  probe and LogME relative to the best backbone's (the probe ranking as a feature), those two held to
  non-negative coefficients (``SIGNS``: a backbone that probes worse is never expected to fine-tune better).
  Coefficients are readable (``coefficients``); an option measured in fewer than ``min_cells`` cells is not
  modelled;
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
POOLED_FEATURES = [*TRAITS, "t_probe", "t_deficit", "logme_vs_best"]
"""Features of a strategy's model pooled over backbones: the traits, this backbone's probe and how far it is below
the best backbone's (both on the model's scale), and its LogME relative to the best (plus one indicator per backbone).
"""
FREE_FEATURES = [*TRAITS, "t_best"]
SIGNS = {"probe_vs_best": 1.0, "logme_vs_best": 1.0}
"""Coefficient signs the models are held to (``_Linear``): a backbone whose features separate the user's classes
*worse* than the best backbone's (a lower probe or LogME relative to the best, the rest equal) is never expected to
end up *better* for it. (Not ``t_deficit``: in the pooled forms the target is the gain over the backbone's *own*
probe, which a larger deficit rightly raises: fine-tuning recovers part of it.) Unconstrained, the collinear probe
and LogME differences took opposite signs on some options, and a backbone far below the best (NEU: MobileNet-0.75's
LogME 0.5 under the best) was predicted 100 % after fine-tuning."""
CELL = ["dataset", "n_images", "image_size"]
FROZEN = 3
ALPHAS = (100.0, 10.0, 1.0)
"""Candidate ridge penalties, simplest (strongest) first."""
VARIANTS: dict[str, tuple[str, str]] = {
    "option-linear": ("option", "linear"),
    "strategy-linear": ("strategy", "linear"),
    "strategy-logit": ("strategy", "logit"),
    "pooled-linear": ("all", "linear"),
    "pooled-logit": ("all", "logit"),
}
"""The model forms ``variant="auto"`` chooses among (pooling, scale), simplest first:

- ``option``: one regression per (strategy, backbone) of accuracy - best probe (the first form);
- ``strategy``: one regression per strategy, pooled over backbones, of accuracy - *this backbone's* probe, with the
  backbone's probe deficit and indicator as features: five times the cells per model, and the backbone choice of a
  trained strategy follows its probe;
- ``all``: as ``strategy``, and the frozen strategies too: their accuracy is then *not* forced to follow their own
  probe one for one; the regression learns how far to trust a backbone's probe against the backbone's record
  (at n = 50 a 5-fold probe on 50 images has a standard error of several points, larger than most differences
  between backbones);
- ``linear`` / ``logit``: gains in accuracy, or in log-odds (a gain shrinks as the probe nears 100 %, where a
  linear gain would overshoot).
"""
EPS = 0.005


def logit(p: Any) -> Any:
    """Log-odds of accuracies, clipped to [EPS, 1 - EPS] (a probe of 100 % must stay finite)."""
    q = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(q / (1 - q))


def expit(x: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


_SCALES = {"linear": (lambda p: np.asarray(p, dtype=float), lambda x: np.asarray(x, dtype=float)),
           "logit": (logit, expit)}  # fmt: skip


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
    variant : str
        One of ``VARIANTS``, or ``"auto"`` (default): chosen by the same nested inner leave-one-dataset-out as
        ``alpha="auto"`` (held-out pick regret, one-standard-error rule, simplest form first); ``variant_`` and
        ``selection_`` say what won and why.
    shrink : bool
        Replace each backbone's probe by its empirical-Bayes estimate (``ProbeShrinkage``, fitted on the training
        cells) before anything else reads it (default). On the broad reference (leave-one-dataset-out, 76 cells) it
        lowered the probe advisor's mean regret from 2.45 to 2.17 points, most at n = 50 and 250 (2.41 to 2.11,
        2.62 to 2.20), where a probe on few images ranks backbones by noise.
    """

    def __init__(self, alpha: float | str = 1.0, interval: float = 0.8, min_cells: int = 6,
                 variant: str = "auto", shrink: bool = True) -> None:  # fmt: skip
        self.alpha = alpha
        self.interval = interval
        self.min_cells = min_cells
        self.variant = variant
        self.shrink = shrink

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
        if self.variant != "auto" and self.variant not in VARIANTS:
            raise AdvisorError(f"unknown gain-model variant {self.variant!r}; known: auto, {', '.join(VARIANTS)}")
        alphas = ALPHAS if self.alpha == "auto" else (float(self.alpha),)
        variants = tuple(VARIANTS) if self.variant == "auto" else (self.variant,)
        candidates = [(v, a) for v in variants for a in alphas]
        shrinkers: dict[str, ProbeShrinkage | None] = {}  # one per inner training set, shared by every candidate
        inner = {c: self._inner(table, *c, shrinkers) for c in candidates}
        (self.variant_, self.alpha_), self.selection_ = _one_se(inner) if len(candidates) > 1 else (candidates[0], {})
        self._fit_models(table, self.variant_, self.alpha_)
        self.residuals_ = inner[(self.variant_, self.alpha_)][0]
        lo, hi = (1 - self.interval) / 2, 1 - (1 - self.interval) / 2
        self.bounds_: dict[bool, tuple[float, float]] = {}
        for frozen in (True, False):
            r = self.residuals_[self.residuals_["frozen"] == frozen]["residual"]
            if len(r) < 10:  # too few for its own quantiles: all residuals
                r = self.residuals_["residual"]
            self.bounds_[frozen] = (float(r.quantile(lo)), float(r.quantile(hi))) if len(r) else (-0.1, 0.1)
        self.n_ranges_ = table.groupby(["strategy", "backbone"])["n_images"].agg(["min", "max"]).to_dict("index")
        self.n_cells_ = int(table[CELL].drop_duplicates().shape[0])
        self.table_ = table  # what the rules (advisor.rules) are distilled from
        return self

    def _fit_models(self, table: pd.DataFrame, variant: str, alpha: float,
                    shrinkage: ProbeShrinkage | None = None) -> None:  # fmt: skip
        """Fit every option's model on ``table``; ``shrinkage``: the probes' shrinkage already fitted on this same
        table (it depends on the rows only, not on the candidate form), else fitted here when ``shrink``."""
        self.pooling_, self.scale_ = VARIANTS[variant]
        self.backbones_ = sorted(b for b in table["backbone"].unique() if b != NO_BACKBONE)
        if shrinkage is None and self.shrink:
            shrinkage = ProbeShrinkage().fit(table)
        self.shrinkage_ = shrinkage
        table = self._scaled(table)
        self.models_: dict[Any, Any] = {}
        keys = pd.Series([self._model_key(s, b) for s, b in zip(table["strategy"], table["backbone"], strict=True)],
                         index=table.index, dtype=object)  # fmt: skip
        for key, rows in table.groupby(keys, sort=False):
            if rows[CELL].drop_duplicates().shape[0] >= self.min_cells:  # one row per cell for a per-option model
                features, base = self._form(rows["strategy"].iloc[0], bool((rows["backbone"] == NO_BACKBONE).all()))
                self.models_[key] = _Linear(self._x(rows, features), rows["t_acc"] - rows[base], alpha,
                                            self._names(features))  # fmt: skip
        self.options_ = sorted({(s, b) for s, b in zip(table["strategy"], table["backbone"], strict=True)
                                if self._model_key(s, b) in self.models_})  # fmt: skip

    def _form(self, strategy: str, backbone_free: bool) -> tuple[list[str], str]:
        """(features, the probe column its gain is measured from) of a strategy's model under the fitted form; one
        place for fitting and predicting. ``POOLED_FEATURES`` come with one indicator per backbone."""
        if _frozen(strategy):
            return (POOLED_FEATURES if self.pooling_ == "all" else TRAITS), "t_probe"
        if self.pooling_ == "option":
            return GAIN_FEATURES, "t_best"
        return (FREE_FEATURES, "t_best") if backbone_free else (POOLED_FEATURES, "t_probe")

    def _names(self, features: list[str]) -> list[str]:
        return [*features, *(f"is_{b}" for b in self.backbones_)] if features is POOLED_FEATURES else list(features)

    def _x(self, rows: pd.DataFrame, features: list[str]) -> np.ndarray:
        x = rows[features].to_numpy(float)
        if features is not POOLED_FEATURES:
            return x
        indicators = np.stack([(rows["backbone"] == b).to_numpy(float) for b in self.backbones_], axis=1)
        return np.hstack([x, indicators])

    def _model_key(self, strategy: str, backbone: str) -> Any:
        return strategy if _frozen(strategy) or self.pooling_ != "option" else (strategy, backbone)

    def _scaled(self, rows: pd.DataFrame) -> pd.DataFrame:
        """``rows`` plus the probes (and accuracy, when known) on the model's scale (shrunk first, if fitted so)."""
        if self.shrinkage_ is not None:
            rows = self.shrinkage_.transform(rows)
        to = _SCALES[self.scale_][0]
        out = rows.assign(t_probe=to(rows["probe"]), t_best=to(rows["best_probe"]))
        out["t_deficit"] = out["t_best"] - out["t_probe"]
        if "accuracy" in out:
            out["t_acc"] = to(out["accuracy"])
        return out

    def _inner(self, table: pd.DataFrame, variant: str, alpha: float,
               shrinkers: dict[str, ProbeShrinkage | None]) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
        """(held-out residuals, held-out cells' pick regret) of a leave-one-dataset-out inside the training data.

        ``shrinkers``: each held-out group's probe shrinkage (fitted without it), filled on first use."""
        residuals, regrets = [], []
        groups = sorted(table["group"].unique())
        if len(groups) < 3:
            return pd.DataFrame(columns=["frozen", "residual"]), pd.DataFrame(columns=["group", "regret"])
        for group in groups:
            inner = GainModel(alpha, self.interval, self.min_cells, variant, self.shrink)
            inner.defaults_ = self.defaults_
            train = table[table["group"] != group]
            if self.shrink and group not in shrinkers:
                shrinkers[group] = ProbeShrinkage().fit(train)
            inner._fit_models(train, variant, alpha, shrinkers.get(group))
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
        rows = self._scaled(rows.drop(columns=["accuracy"], errors="ignore"))
        back = _SCALES[self.scale_][1]
        for (strategy, backbone), at in rows.groupby(["strategy", "backbone"]).indices.items():
            model = self.models_.get(self._model_key(strategy, backbone))
            if model is None:
                continue
            part = rows.iloc[at]
            features, base = self._form(strategy, backbone == NO_BACKBONE)
            t = part[base].to_numpy() + model.predict(self._x(part, features))
            out[at] = back(t)
        return pd.Series(out, index=rows.index)

    def predict(self, traits: dict[str, Any], probes: pd.DataFrame, shrink_n: int | None = None) -> pd.DataFrame:
        """Every modelled option for one dataset: ``accuracy``, ``low``, ``high``, ``extrapolated``, best first.

        ``shrink_n``: weigh the probes as if measured on that many images (default the traits' n). The pilot
        (``advisor.pilot``) predicts at its size m with the weight of the user's n: its shift, pilot(m) minus this
        prediction, then adds the dataset's own deviation to predicted(n) once, not 1 + w(n) - w(m) times.

        ``traits``: ``n_images`` and optionally ``n_classes``, ``gap`` (relative); ``probes``: one row per backbone
        with ``linear_probe_accuracy`` and ``logme`` (``advisor.probes.folder_probes``). Options on a backbone
        without probes are left out. Options that are not extrapolated come first.
        """
        if probes is None or probes.empty:
            raise AdvisorError("no probes of the images: measure the folder (advisor recommend --data-dir)")
        n = int(traits["n_images"])
        k = traits.get("n_classes")
        gap = traits.get("gap")
        base = {"n_images": n, "shrink_n": int(shrink_n) if shrink_n else n, "log2_n": math.log2(n),
                "log2_classes": math.log2(k) if k else self.defaults_["log2_classes"],
                "gap": float(gap) if gap is not None and gap == gap else self.defaults_["gap"]}  # fmt: skip
        by_backbone = probes.groupby("backbone")[["linear_probe_accuracy", "logme"]].mean()
        best_probe = float(by_backbone["linear_probe_accuracy"].max())
        best_logme = float(by_backbone["logme"].max()) if by_backbone["logme"].notna().any() else 0.0
        rows = []
        for strategy, backbone in self.options_:
            if backbone != NO_BACKBONE and backbone not in by_backbone.index:
                continue
            probe = float(by_backbone.loc[backbone, "linear_probe_accuracy"]) if backbone != NO_BACKBONE else best_probe
            lm = float(by_backbone.loc[backbone, "logme"]) if backbone != NO_BACKBONE else best_logme
            lm = best_logme if lm != lm else lm  # NaN: no evidence
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
            names = model.names
            rows.append({"option": key if isinstance(key, str) else "/".join(key), "intercept": model.intercept,
                         **dict(zip(names, model.coef, strict=True))})  # fmt: skip
        return pd.DataFrame(rows)


def _one_se(inner: dict[Any, tuple[pd.DataFrame, pd.DataFrame]]) -> tuple[Any, dict[str, Any]]:
    """The first (simplest) candidate whose inner mean regret is within one standard error (over held-out datasets)
    of the best one's."""
    stats = {}
    for alpha, (_, regrets) in inner.items():
        per_group = regrets.groupby("group")["regret"].mean() if len(regrets) else pd.Series(dtype=float)
        se = float(per_group.std(ddof=1) / math.sqrt(len(per_group))) if len(per_group) > 1 else 0.0
        stats[alpha] = {"candidate": "/".join(map(str, alpha)), "se": se,
                        "inner_regret": float(regrets["regret"].mean()) if len(regrets) else math.inf}
    best = min(stats, key=lambda a: stats[a]["inner_regret"])
    limit = stats[best]["inner_regret"] + stats[best]["se"]
    chosen = next(a for a in inner if stats[a]["inner_regret"] <= limit)
    return chosen, {"rule": "1se", "candidates": list(stats.values())}


class _Linear:
    """Ridge regression on standardised features, kept as plain arrays so predicting is one dot product.

    Features named in ``SIGNS`` keep their coefficient's sign (a bounded least-squares ridge: ``scipy``'s
    ``lsq_linear`` on the system augmented with sqrt(alpha) I, the intercept unpenalised as the mean of ``y`` over
    centred features); without such features it is exactly scikit-learn's ``Ridge``.
    """

    def __init__(self, x: pd.DataFrame | np.ndarray, y: pd.Series | np.ndarray, alpha: float,
                 names: list[str]) -> None:  # fmt: skip
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        self.names = names
        self.mean = x.mean(axis=0)
        scale = x.std(axis=0)
        self.scale = np.where(scale > 0, scale, 1.0)
        z = (x - self.mean) / self.scale
        signs = np.array([SIGNS.get(n, 0.0) for n in names])
        if not signs.any():
            ridge = Ridge(alpha=alpha, solver="cholesky").fit(z, y)
            self.coef, self.intercept = ridge.coef_.astype(float), float(ridge.intercept_)
            return
        from scipy.optimize import lsq_linear

        k = z.shape[1]
        a = np.vstack([z, math.sqrt(alpha) * np.eye(k)])
        b = np.concatenate([y - y.mean(), np.zeros(k)])
        low = np.where(signs > 0, 0.0, -np.inf)
        high = np.where(signs < 0, 0.0, np.inf)
        self.coef = lsq_linear(a, b, bounds=(low, high), method="bvls").x.astype(float)
        self.intercept = float(y.mean())

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept


class ProbeShrinkage:
    """Empirical-Bayes shrinkage of each backbone's probe towards what the study expects of that backbone.

    A 5-fold probe on 50 images has a standard error of several points, larger than most true differences between
    backbones, so ranking backbones by the raw probes at small n follows noise. Model, fitted on the study's cells
    (per cell: the probes of the backbones it ran): probe = cell level + backbone offset + deviation, with the
    deviation's variance ``tau2 + kappa / n`` (a true dataset-specific deviation plus sampling noise shrinking as 1/n;
    least squares of the squared residuals on 1/n). A probe is then replaced by its posterior mean, cell level +
    offset + w (probe - cell level - offset) with w = tau2 / (tau2 + kappa / n): near 1 where the probes are
    precise, near the backbone's record where they are not. Nothing is tuned: tau2 and kappa are moments of the
    training cells. ``best_probe`` and ``probe_vs_best`` are recomputed from the shrunk probes.
    """

    def fit(self, table: pd.DataFrame) -> ProbeShrinkage:
        p = table[table["backbone"] != NO_BACKBONE].drop_duplicates([*CELL, "backbone"])[[*CELL, "backbone", "probe"]]
        keys = p.groupby(CELL, sort=False).ngroup()
        offsets = pd.Series(0.0, index=sorted(p["backbone"].unique()))
        for _ in range(20):  # two-way additive fit by alternating means (cells see different backbone subsets)
            level = (p["probe"] - p["backbone"].map(offsets)).groupby(keys).transform("mean")
            offsets = (p["probe"] - level).groupby(p["backbone"]).mean()
            offsets -= offsets.mean()
        level = (p["probe"] - p["backbone"].map(offsets)).groupby(keys).transform("mean")
        resid = p["probe"] - level - p["backbone"].map(offsets)
        per_cell = keys.map(keys.value_counts())
        ok = per_cell >= 2  # a cell with one backbone has no deviation to see
        # E[r^2] = (1 - 1/k)(tau2 + kappa / n) for a deviation measured against the mean of k backbones
        y = (resid[ok] ** 2) / (1 - 1 / per_cell[ok])
        x = np.column_stack([np.ones(int(ok.sum())), 1.0 / p.loc[ok, "n_images"].to_numpy(float)])
        coef = np.linalg.lstsq(x, y.to_numpy(float), rcond=None)[0] if ok.sum() >= 2 else np.array([1.0, 0.0])
        self.tau2_, self.kappa_ = max(float(coef[0]), 1e-6), max(float(coef[1]), 0.0)
        self.offsets_ = offsets.to_dict()
        return self

    def weight(self, n: Any) -> Any:
        return self.tau2_ / (self.tau2_ + self.kappa_ / np.asarray(n, dtype=float))

    def transform(self, rows: pd.DataFrame) -> pd.DataFrame:
        out = rows.copy()
        real = (out["backbone"] != NO_BACKBONE) & out["backbone"].isin(list(self.offsets_))
        if not real.any():
            return out
        keys = out.groupby([c for c in CELL if c in out.columns], sort=False).ngroup()  # predict's rows: n_images
        offset = out["backbone"].map(self.offsets_).astype(float)
        base = out.loc[real, ["backbone", "probe"]].assign(key=keys[real], off=offset[real])
        base = base.drop_duplicates(["key", "backbone"])
        level = (base["probe"] - base["off"]).groupby(base["key"]).mean()
        prior = keys.map(level) + offset
        noise_n = out["shrink_n"] if "shrink_n" in out.columns else out["n_images"]
        shrunk = prior + self.weight(noise_n) * (out["probe"] - prior)
        out.loc[real, "probe"] = shrunk[real]
        best = out.loc[real].groupby(keys[real])["probe"].max()
        out["best_probe"] = keys.map(best).fillna(out["best_probe"])
        none = out["backbone"] == NO_BACKBONE
        out.loc[none, "probe"] = out.loc[none, "best_probe"]
        out["probe_vs_best"] = out["probe"] - out["best_probe"]
        return out


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
    # LogME can fail (NaN: e.g. Office-31 amazon at n = 250, 31 classes); a missing evidence says nothing either way
    table["logme_vs_best"] = (table["logme"] - table["best_logme"]).fillna(0.0)
    table["log2_n"] = np.log2(table["n_images"].astype(float))
    k = table["n_classes"].astype(float)
    table["log2_classes"] = np.log2(k.fillna(k.median() if k.notna().any() else 2.0))
    table["gap"] = table["gap"].astype(float).fillna(table["gap"].median() if table["gap"].notna().any() else 1.0)
    table["frozen"] = [_frozen(s) for s in table["strategy"]]
    return table.reset_index(drop=True)
