"""The advisor: expected accuracy and cost of every (strategy, backbone) for a dataset's traits, from the study.

Model (small enough to explain in a few lines; ``advisor.relative`` has the details):

- a measured cell is a (dataset, n_images, image_size); its accuracies are a **level** (how hard the dataset is at
  that size: MNIST near 0.98, RetinaMNIST near 0.5) plus one **effect** per option, fitted jointly (two-way fixed
  effects), so an option missing from a cell (full fine-tuning is capped at 1000 images on CPU) biases nothing.
  Ranking needs the effects alone;
- an option's effect for a query is the fit on the measured cells weighted by a **Gaussian kernel of their trait
  distance** to the query (``DISTANCE_WEIGHTS``: one doubling of the training-set size or of the domain gap = 1,
  another domain or a doubling of classes or pixels = 0.5), **shrunk towards the global effects** (every cell
  weighing the same). Each base dataset weighs 1 in all: its shift-ladder levels share that weight. The cells near
  the query are the **evidence** shown to the user, and the recipe is read from their best runs;
- the **shrinkage is estimated** from the results (empirical Bayes: the seed noise of a cell's mean over the
  variance of the cells' real deviations from the global effects), and the kernel's **bandwidth is chosen inside
  ``fit``** by a leave-one-dataset-out over the datasets it is given (paired one-standard-error rule, simplest
  first: the global ranking, then one distance unit, then half of one), so ``advisor evaluate``, which refits
  without the held-out dataset, reports a nested figure. ``selection_`` keeps every candidate's inner regret. With
  few base datasets it may keep the global ranking (it did on the 6-dataset CPU reference study): then no kernel
  over the traits beat it on held-out datasets by more than the noise;
- random forests (scikit-learn, fixed ``random_state``) on the traits (log2 n, log2 classes, relative gap, image
  size, imbalance, domain one-hot) predict the level (for the accuracy shown; it does not change the ranking) and
  the log training cost (with strategy and backbone one-hot);
- expected accuracy = level + effect; the interval adds the kernel's weighted residual spread, the level forest's
  tree spread and the seed-to-seed variance of one run;
- ``rules_`` is a depth-``rules_depth`` decision tree over (size, gap) distilled from the advisor's own picks on the
  study's datasets x sizes: the rule of thumb to remember, with its fidelity to the advisor.

Why: on the CPU reference study of 2026-11-23 (6 base datasets + 5 shift-ladder levels, 31 held-out cells), with
the held-out dataset also kept out of the gap unit, the previous model (a kernel average of accuracy minus the
cell's mean, bandwidth 1, nothing selected) lost 1.34 accuracy points per held-out cell against the best measured
option; this one, nested, 1.20 (the textbook 2x2 rule: 1.74). Kernels chosen by the minimum inner regret instead of
the one-standard-error rule lost 1.48: on a handful of datasets, which trait-dependent deviations are real cannot
be told from seed noise, and the rule admits that. ``advisor evaluate`` prints the figures for the current tables.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestRegressor
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import check_is_fitted

from advisor.data import OTHER, SHIFTED, AdvisorError, as_json, describe_source, gap_scales, prepare, rows_checksum
from advisor.recipes import recipe_from_runs
from advisor.relative import DISTANCE_WEIGHTS as DISTANCE_WEIGHTS  # re-exported: the evidence distance
from advisor.relative import RULES, RelativeAccuracy, candidates, cell_table, select, trait_defaults, with_features
from advisor.relative import distance_matrix as distance_matrix
from advisor.render import rules_text
from advisor.rules import tree_rules
from advisor.textbook import textbook_rule
from study.engine.store import NO_BACKBONE
from study.train.strategies import strategy_or_none

CLOSE_CALL = 0.01
"""Expected accuracies closer than this are a toss-up at the study's noise level (seeds x 500 test images)."""

NUMERIC = ("log2_n", "log2_classes", "gap", "image_size", "imbalance")


def freeze_level(strategy: str) -> int:
    """How much of the pretrained network a strategy keeps frozen (3 = all of it, 0 = nothing; -1 = unknown)."""
    record = strategy_or_none(strategy)
    return record.freeze_level if record is not None else -1


# ---------------------------------------------------------------------------------------------------- plain data


@dataclass(frozen=True)
class Traits:
    """What the advisor knows about a user's dataset; ``None`` = unknown (the study's typical value is assumed).

    ``gap`` is the relative domain gap (``advisor.data``: 1 ≈ as far from ImageNet as the study's natural photos),
    e.g. measured by ``advisor.traits.measure``; ``imbalance`` is the share of the largest class.
    """

    n_images: int
    domain: str = OTHER
    n_classes: int | None = None
    image_size: int | None = None
    gap: float | None = None
    imbalance: float | None = None
    backbone: str | None = None
    budget_minutes: float | None = None

    def __post_init__(self) -> None:
        n = self.n_images
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
            raise AdvisorError(f"--n-images must be a positive number of labelled images, got {n!r}")
        if self.n_classes is not None and (not isinstance(self.n_classes, int | np.integer) or self.n_classes < 2):
            raise AdvisorError(f"--n-classes must be an integer of at least 2, got {self.n_classes!r}")
        if self.image_size is not None and (not isinstance(self.image_size, int | np.integer) or self.image_size < 8):
            raise AdvisorError(f"--image-size must be an integer of at least 8 pixels, got {self.image_size!r}")
        if self.budget_minutes is not None and not self.budget_minutes > 0:
            raise AdvisorError(f"--budget must be a positive number of minutes, got {self.budget_minutes!r}")
        if self.gap is not None and not (self.gap >= 0 and math.isfinite(self.gap)):
            raise AdvisorError(f"the domain gap must be a finite number >= 0, got {self.gap!r}")
        if self.imbalance is not None and not 0 < self.imbalance <= 1:
            raise AdvisorError(f"the class imbalance (largest class share) must be in (0, 1], got {self.imbalance!r}")
        if not isinstance(self.domain, str) or not self.domain.strip():
            raise AdvisorError(f"--domain must be a non-empty label, got {self.domain!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Traits:
        known = {f.name for f in fields(cls)}
        extra = sorted(set(values) - known)
        if extra:
            raise AdvisorError(f"unknown traits {extra}; known traits: {sorted(known)}")
        if "n_images" not in values:
            raise AdvisorError("traits need n_images (the number of labelled training images)")
        return cls(**values)


@dataclass
class Evidence:
    """A measured cell near the query: what the study saw, with its 95 % interval over seeds and test images."""

    dataset: str
    domain: str
    n_images: int
    image_size: int
    strategy: str
    backbone: str
    accuracy: float
    ci_low: float
    ci_high: float
    n_seeds: int
    distance: float


@dataclass
class Option:
    """One (strategy, backbone) with its expected accuracy, interval, cost and recipe."""

    rank: int
    strategy: str
    backbone: str
    accuracy: float
    low: float
    high: float
    cost_minutes: float
    within_budget: bool
    measured_nearby: bool
    recipe: dict[str, Any] = field(default_factory=dict)
    evidence: list[Evidence] = field(default_factory=list)


@dataclass
class Recommendation:
    """Ranked options for one query, what was assumed, where the advisor extrapolates and how far to trust it."""

    traits: dict[str, Any]
    assumed: list[str]
    options: list[Option]
    extrapolation: list[str]
    trust: str
    trust_reasons: list[str]
    textbook: str
    interval: float
    fitted_on: dict[str, Any]

    @property
    def best(self) -> Option:
        return self.options[0]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (for ``--json``)."""
        return as_json(asdict(self))


# ---------------------------------------------------------------------------------------------------- the estimator


class Advisor(BaseEstimator):
    """Which transfer strategy and backbone to use for a dataset, learned from the study's measured results.

    Parameters
    ----------
    bandwidth : float or "auto"
        Width of the evidence kernel in trait-distance units (``DISTANCE_WEIGHTS``): larger pools more cells;
        ``math.inf`` is the global ranking. ``"auto"``: chosen in ``fit`` by inner leave-one-dataset-out among
        ``advisor.relative.BANDWIDTHS``.
    shrinkage : float or "auto"
        Strength (in kernel-weighted cells) of the pull of the local option effects towards the global ones.
        ``"auto"``: estimated from the results (empirical Bayes: seed noise over the variance of real deviations).
    selection : {"1se", "min"}
        How the inner leave-one-dataset-out chooses: the simplest candidate whose excess regret over the best is
        within one (paired, dataset-clustered) standard error (default), or the best.
    n_estimators : int
        Trees of the level and cost forests.
    min_samples_leaf : int
        Smallest leaf of the cost forest.
    interval : float
        Coverage of the reported accuracy interval (0.8 = 10th to 90th percentile).
    n_evidence : int
        Nearest measured cells reported (and read for the recipe) per option.
    rules_depth : int
        Depth of the distilled rule-of-thumb tree (``rules_text``).
    use_domain : bool
        Whether the level and cost forests see the domain label (the evidence distance always does).
    random_state : int
        Seed of every forest and tree: the same results give the same advisor.

    Attributes
    ----------
    model_ : advisor.relative.RelativeAccuracy
        The option effects (global and kernel-local), with the ``bandwidth_`` and ``shrinkage_`` in use.
    selection_ : dict
        How they were chosen: ``rule``, ``inner_datasets`` and per candidate its inner leave-one-dataset-out mean
        regret (``inner_regret``, accuracy as a fraction), its standard error, and its ``excess`` over the best
        candidate with the standard error of that paired difference.
    level_model_, cost_model_ : RandomForestRegressor
        Cell-level accuracy and log training cost (minutes) from the traits.
    rules_ : list of dict
        The distilled rules (conditions, strategy, backbone, support); ``rules_fidelity_`` their agreement.
    fitted_on_ : dict
        ``source``, ``n_rows``, ``n_excluded_degenerate``, ``datasets``, ``checksum`` of the runs it learned from.
    domains_ : list of str
        Domain labels seen in the results.
    ranges_ : dict
        Measured (min, max) of every numeric trait, for the extrapolation checks.
    gap_scales_ : dict
        Per (backbone, image size): the Fréchet distance that is one unit of relative gap (``advisor.data``).

    Examples
    --------
    >>> from advisor import Advisor, load_results
    >>> runs, similarity = load_results()                       # doctest: +SKIP
    >>> advisor = Advisor().fit(runs, similarity)               # doctest: +SKIP
    >>> advisor.recommend({"n_images": 2000, "domain": "medical"}).best.strategy  # doctest: +SKIP
    'full_fine_tune'
    >>> advisor.bandwidth_, advisor.selection_["rule"]   # doctest: +SKIP
    (inf, '1se')
    """

    def __init__(
        self,
        bandwidth: float | str = "auto",
        shrinkage: float | str = "auto",
        selection: str = "1se",
        n_estimators: int = 100,
        min_samples_leaf: int = 3,
        interval: float = 0.8,
        n_evidence: int = 4,
        rules_depth: int = 3,
        use_domain: bool = True,
        random_state: int = 0,
    ) -> None:
        self.bandwidth = bandwidth
        self.shrinkage = shrinkage
        self.selection = selection
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.interval = interval
        self.n_evidence = n_evidence
        self.rules_depth = rules_depth
        self.use_domain = use_domain
        self.random_state = random_state

    # -- fitting -----------------------------------------------------------------------------------------------

    def fit(self, runs: pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame], similarity: pd.DataFrame | None = None
            ) -> Advisor:  # fmt: skip
        """Learn from a results frame (``advisor.data.load_results``; its tuple is accepted as is).

        Degenerate runs are left out (``study.analysis.stats.mark_degenerate``): their accuracy says nothing comparable.
        """
        if isinstance(runs, tuple) and similarity is None:
            runs, similarity = runs
        if not 0 < self.interval < 1:
            raise AdvisorError(f"interval must be in (0, 1), got {self.interval!r}")
        for name in ("bandwidth", "shrinkage"):
            value = getattr(self, name)
            if value != "auto" and not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0):
                raise AdvisorError(f"{name} must be a positive number or 'auto', got {value!r}")
        if self.selection not in RULES:
            raise AdvisorError(f"selection must be one of {', '.join(RULES)}, got {self.selection!r}")
        if not isinstance(runs, pd.DataFrame) or runs.empty:
            raise AdvisorError("no results to fit on: the results table is empty")
        frame = prepare(runs, similarity)
        self.gap_scales_ = gap_scales(similarity)
        self._impute_setup(frame)
        keys = ["dataset", "n_images", "image_size"]
        self.options_ = sorted({(s, b) for s, b in zip(frame["strategy"], frame["backbone"], strict=True)})
        self.strategies_ = sorted({s for s, _ in self.options_})
        self.backbones_ = sorted({b for _, b in self.options_})
        self.domains_ = sorted(frame["domain"].unique())
        seed_var = frame.groupby([*keys, "strategy", "backbone"])["accuracy"].var().dropna()
        noise_var = float(seed_var.mean()) if len(seed_var) else 0.0
        bandwidths = candidates(self.bandwidth)
        self.selection_ = select(frame, similarity, self.options_, bandwidths, self.shrinkage, self.selection,
                                 noise_var)  # fmt: skip
        self.bandwidth_ = self.selection_["bandwidth"]
        frame = self._with_features(frame)
        table = cell_table(frame, self.options_)
        self.model_ = RelativeAccuracy(self.bandwidth_, self.shrinkage).fit(table, noise_var)
        self.shrinkage_ = self.model_.tau
        cells = table.cells.assign(level=self.model_.levels_)
        frame = frame.merge(cells[[*keys, "level"]], on=keys, how="left")
        frame["advantage"] = frame["accuracy"] - frame["level"]
        rs = self.random_state
        self.level_model_ = RandomForestRegressor(self.n_estimators, min_samples_leaf=1, random_state=rs)
        self.level_model_.fit(self._trait_matrix(cells), cells["level"].to_numpy())
        self.runs_ = frame
        x = self._option_matrix(frame)
        self.cost_model_ = RandomForestRegressor(self.n_estimators, min_samples_leaf=self.min_samples_leaf,
                                                 random_state=rs)  # fmt: skip
        self.cost_model_.fit(x, np.log(frame["cost_minutes"].clip(lower=1e-3)).to_numpy())
        self.ranges_ = {
            name: (float(frame[name].min()), float(frame[name].max()))
            for name in ("n_images", "n_classes", "image_size", "gap", "imbalance")
            if frame[name].notna().any()
        }
        self.fitted_on_ = {
            "source": describe_source(runs),
            "n_rows": int(len(frame)),
            "n_excluded_degenerate": int(len(runs.dropna(subset=["accuracy"])) - len(frame)),
            "datasets": sorted(frame["dataset"].unique()),
            "checksum": rows_checksum(frame),
        }
        self.rules_, self.rules_fidelity_ = self._distil_rules()
        return self

    def _impute_setup(self, frame: pd.DataFrame) -> None:
        """Typical values for unknown traits, learned from the study (per domain for the gap)."""
        self._defaults = trait_defaults(frame)
        self.domain_gap_ = self._defaults["domain_gap"]
        self.default_gap_ = self._defaults["default_gap"]
        self.default_classes_ = self._defaults["default_classes"]
        self.default_size_ = self._defaults["default_size"]

    def _with_features(self, frame: pd.DataFrame) -> pd.DataFrame:
        return with_features(frame, self._defaults)

    def _trait_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        cols = [frame[c].astype(float).to_numpy() for c in NUMERIC]
        if self.use_domain:
            cols += [(frame["domain"] == d).to_numpy(dtype=float) for d in self.domains_]
        return np.column_stack(cols)

    def _option_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        traits = self._trait_matrix(frame)
        strategies = [(frame["strategy"] == s).to_numpy(dtype=float) for s in self.strategies_]
        backbones = [(frame["backbone"] == b).to_numpy(dtype=float) for b in self.backbones_]
        return np.column_stack([traits, *strategies, *backbones])

    # -- predicting --------------------------------------------------------------------------------------------

    def _query(self, traits: Traits | dict[str, Any]) -> tuple[Traits, pd.DataFrame, list[str]]:
        """The query as a one-row trait frame, with the traits that had to be assumed."""
        t = traits if isinstance(traits, Traits) else Traits.from_dict(dict(traits))
        self._check_domain(t.domain)
        assumed = []
        gap = t.gap
        if gap is None:
            gap = self.domain_gap_.get(t.domain, self.default_gap_)
            typical = "its domain's" if t.domain in self.domain_gap_ else "the study's non-natural"
            where = f"{typical} typical gap"
            assumed.append(f"domain gap {gap:.2f} ({where}; measure it with --data-dir)")
        n_classes = t.n_classes
        if n_classes is None:
            n_classes = self.default_classes_
            assumed.append(f"{n_classes} classes (the study's median; pass --n-classes)")
        size = t.image_size
        if size is None:
            size = self.default_size_
            assumed.append(f"image size {size} px (the study's; pass --image-size)")
        imbalance = t.imbalance if t.imbalance is not None else 1.0 / n_classes
        row = {"n_images": int(t.n_images), "domain": t.domain, "n_classes": int(n_classes), "image_size": int(size),
               "gap": float(gap), "imbalance": float(imbalance)}  # fmt: skip
        return t, self._with_features(pd.DataFrame([row])), assumed

    def _check_domain(self, domain: str) -> None:
        from study.data.datasets import known_domains

        known = sorted({*known_domains(), *self.domains_, SHIFTED, OTHER})
        if domain not in known:
            raise AdvisorError(f"unknown domain {domain!r}; known domains: {', '.join(known)}")

    def predict_table(self, traits: Traits | dict[str, Any]) -> pd.DataFrame:
        """Every (strategy, backbone) with expected accuracy, interval and cost, best first (no budget applied)."""
        check_is_fitted(self)
        t, query, _ = self._query(traits)
        return self._predict(query, self._options_for(t.backbone)).drop(columns="query")

    def _options_for(self, backbone: str | None) -> list[tuple[str, str]]:
        if backbone is None:
            return list(self.options_)
        if backbone not in self.backbones_ or backbone == NO_BACKBONE:
            known = [b for b in self.backbones_ if b != NO_BACKBONE]
            from study.zoo.backbones import BACKBONES

            if backbone in BACKBONES:  # a real backbone the results never ran: say how to measure it
                raise AdvisorError(
                    f"backbone {backbone!r} has no cells in these results (they hold {', '.join(known)}); sweep it "
                    f"first, e.g. python -m study.run --grid broad --backbones {backbone} --store URL, then pass "
                    "--results URL"
                )
            raise AdvisorError(
                f"backbone {backbone!r} is not in the study's results; known backbones: {', '.join(known)}"
            )
        return [(s, b) for s, b in self.options_ if b in (backbone, NO_BACKBONE)]

    def _predict(self, queries: pd.DataFrame, options: list[tuple[str, str]]) -> pd.DataFrame:
        """Per query (column ``query``, 0..n-1) and option: expected accuracy, interval, cost; best first per query.

        One batched pass over the trees (the rule distillation predicts hundreds of queries at once).
        """
        from scipy.stats import norm

        queries = queries.reset_index(drop=True)
        nq, no = len(queries), len(options)
        table = queries.loc[queries.index.repeat(no)].reset_index(drop=True)
        table["query"] = np.repeat(np.arange(nq), no)
        table["strategy"] = [s for s, _ in options] * nq
        table["backbone"] = [b for _, b in options] * nq
        x = self._option_matrix(table)
        adv_mean, adv_var = self.model_.predict(queries, options)
        traits = self._trait_matrix(queries)
        level = np.stack([tree.predict(traits) for tree in self.level_model_.estimators_])
        mean = adv_mean.reshape(-1) + np.repeat(level.mean(axis=0), no)
        sd = np.sqrt(adv_var.reshape(-1) + np.repeat(level.var(axis=0), no))
        z = float(norm.ppf(0.5 + self.interval / 2))
        out = table[["query", "strategy", "backbone"]].copy()
        out["expected"] = mean  # ranked unclipped: near 100 % clipping would turn real differences into ties
        out["accuracy"] = np.clip(mean, 0.0, 1.0)
        out["low"] = np.clip(mean - z * sd, 0.0, 1.0)
        out["high"] = np.clip(mean + z * sd, 0.0, 1.0)
        out["cost_minutes"] = np.exp(self.cost_model_.predict(x))
        out["freeze_level"] = out["strategy"].map(freeze_level)
        # ties (equal expected accuracy) go to the cheaper option, then to the more frozen one
        order = ["query", "expected", "cost_minutes", "freeze_level"]
        out = out.sort_values(order, ascending=[True, False, True, False], kind="stable").reset_index(drop=True)
        return out.drop(columns=["freeze_level", "expected"])

    def recommend(self, traits: Traits | dict[str, Any]) -> Recommendation:
        """Ranked options for ``traits`` with intervals, costs, recipes, evidence and an honest trust level."""
        check_is_fitted(self)
        t, query, assumed = self._query(traits)
        table = self._predict(query, self._options_for(t.backbone)).drop(columns="query")
        budget = t.budget_minutes
        table["within_budget"] = True if budget is None else table["cost_minutes"] <= budget
        table = table.sort_values("within_budget", ascending=False, kind="stable").reset_index(drop=True)
        q = query.iloc[0]
        options = []
        for rank, row in enumerate(table.itertuples(index=False), start=1):
            evidence, rows = self._evidence(q, row.strategy, row.backbone)
            options.append(
                Option(
                    rank=rank,
                    strategy=row.strategy,
                    backbone=row.backbone,
                    accuracy=float(row.accuracy),
                    low=float(row.low),
                    high=float(row.high),
                    cost_minutes=float(row.cost_minutes),
                    within_budget=bool(row.within_budget),
                    measured_nearby=bool(evidence) and evidence[0].distance <= 1.0,
                    recipe=recipe_from_runs(row.strategy, rows),
                    evidence=evidence,
                )  # fmt: skip
            )
        flags = self._extrapolation(t, q)
        trust, reasons = self._trust(flags, assumed, options)
        used = {k: as_json(q[k]) for k in ("n_images", "domain", "n_classes", "image_size", "gap", "imbalance")}
        used.update(backbone=t.backbone, budget_minutes=t.budget_minutes)
        return Recommendation(
            traits=used, assumed=assumed, options=options, extrapolation=flags, trust=trust, trust_reasons=reasons,
            textbook=textbook_rule(int(q["n_images"]), str(q["domain"]), float(q["gap"])), interval=self.interval,
            fitted_on=dict(self.fitted_on_),
        )  # fmt: skip

    # -- evidence, recipes, trust --------------------------------------------------------------------------------

    def _distances(self, q: pd.Series, cells: pd.DataFrame) -> np.ndarray:
        return distance_matrix(q.to_frame().T, cells)[0]

    def _evidence(self, q: pd.Series, strategy: str, backbone: str) -> tuple[list[Evidence], pd.DataFrame]:
        from study.analysis.stats import summarise

        runs = self.runs_[(self.runs_["strategy"] == strategy) & (self.runs_["backbone"] == backbone)]
        keys = ["dataset", "n_images", "image_size"]
        cells = runs.drop_duplicates(keys).copy()
        cells["distance"] = self._distances(q, cells)
        near = cells.nsmallest(self.n_evidence, "distance")
        rows = runs.merge(near[[*keys, "distance"]], on=keys)
        summary = summarise(rows, n_boot=500) if len(rows) else pd.DataFrame()
        out = []
        for cell in near.itertuples(index=False):
            same = (summary["dataset"] == cell.dataset) & (summary["n_images"] == cell.n_images)
            s = summary[same & (summary["image_size"] == cell.image_size)].iloc[0]
            out.append(Evidence(dataset=cell.dataset, domain=cell.domain, n_images=int(cell.n_images),
                                image_size=int(cell.image_size), strategy=strategy, backbone=backbone,
                                accuracy=float(s["accuracy_mean"]), ci_low=float(s["accuracy_ci_low"]),
                                ci_high=float(s["accuracy_ci_high"]), n_seeds=int(s["n_seeds"]),
                                distance=round(float(cell.distance), 3)))  # fmt: skip
        return out, rows

    def _extrapolation(self, t: Traits, q: pd.Series) -> list[str]:
        flags = []
        if q["domain"] not in self.domains_:
            basis = "the measured domain gap" if t.gap is not None else "an assumed domain gap"
            flags.append(
                f"domain {q['domain']!r} is outside the study (it measured {', '.join(self.domains_)}): "
                f"the advice rests on {basis}"
            )
        labels = {"n_images": "training-set size", "n_classes": "number of classes", "image_size": "image size",
                  "gap": "domain gap"}  # fmt: skip
        for name, label in labels.items():
            if name not in self.ranges_ or (name == "gap" and t.gap is None):
                continue
            lo, hi = self.ranges_[name]
            value = float(q[name])
            if value < lo or value > hi:
                flags.append(f"{label} {value:g} is outside the measured range {lo:g}-{hi:g}")
        return flags

    def _trust(self, flags: list[str], assumed: list[str], options: list[Option]) -> tuple[str, list[str]]:
        reasons = list(flags)
        top = options[0]
        nearest = top.evidence[0].distance if top.evidence else math.inf
        if nearest > 1.0:
            reasons.append(f"the nearest measured cell for {top.strategy} is {nearest:.1f} trait units away")
        if any(a.startswith("domain gap") for a in assumed):
            reasons.append("the domain gap was not measured")
        if len(options) > 1 and top.accuracy - options[1].accuracy < CLOSE_CALL:
            second = options[1]
            reasons.append(f"close call: {second.strategy}/{second.backbone} is expected within 1 accuracy point")
        if flags:
            level = "low" if len(flags) > 1 or nearest > 2.0 else "medium"
        elif nearest > 1.0 or any(a.startswith("domain gap") for a in assumed):
            level = "medium"
        else:
            level = "high"
        return level, reasons

    # -- rules --------------------------------------------------------------------------------------------------

    def _distil_rules(self) -> tuple[list[dict[str, Any]], float]:
        """A shallow tree over (log2 n, gap) fitted to the advisor's own picks on the study's datasets × sizes."""
        per_dataset = self.runs_.drop_duplicates(["dataset", "image_size"])
        lo, hi = self.ranges_["n_images"]
        sizes = np.unique(np.round(np.geomspace(lo, hi, 25)).astype(int))
        cols = ["domain", "n_classes", "image_size", "gap", "imbalance"]
        queries = per_dataset[cols].loc[per_dataset.index.repeat(len(sizes))].reset_index(drop=True)
        queries["n_images"] = np.tile(sizes, len(per_dataset))
        queries = self._with_features(queries)
        best = self._predict(queries, list(self.options_)).groupby("query").head(1).set_index("query").sort_index()
        x = queries[["log2_n", "gap"]].to_numpy(dtype=float)
        y = best["strategy"].to_numpy()
        backbones = best["backbone"].to_numpy()
        tree = DecisionTreeClassifier(max_depth=self.rules_depth, min_samples_leaf=max(1, len(y) // 20),
                                      random_state=self.random_state).fit(x, y)  # fmt: skip
        fidelity = float((tree.predict(x) == y).mean())
        return _tree_rules(tree, tree.apply(x), y, backbones), fidelity

    def rules_text(self) -> str:
        """The fitted advice as a few if-then rules over training-set size and domain gap (``advisor.render``)."""
        check_is_fitted(self)
        return rules_text(self)


# ---------------------------------------------------------------------------------------------------- helpers


def _tree_rules(tree: DecisionTreeClassifier, leaves: np.ndarray, y: np.ndarray, backbones: np.ndarray
                ) -> list[dict[str, Any]]:  # fmt: skip
    """The tree's leaves as rules (``advisor.rules.tree_rules``) with their support, and the backbone the advisor
    picked most often together with each rule's strategy there."""
    rules = []
    for rule in tree_rules(tree, ("log2_n", "gap")):
        mask = np.isin(leaves, rule.pop("nodes"))
        counts = Counter(str(b) for b in backbones[mask & (y == rule["strategy"])])
        rules.append({**rule, "support": int(mask.sum()), "backbone": counts.most_common(1)[0][0] if counts else None})
    return rules
