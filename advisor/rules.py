"""Rules a person can remember, distilled from the probe-based advisor (``advisor.gain.GainModel``).

The advisor ranks every option from the traits and the probes of the user's images; a person wants three or four
lines. A shallow decision tree (scikit-learn) is fitted to the advisor's own first choice of *strategy* on the study's
cells, over traits a user can read off: the number of labelled images, the best frozen backbone's cross-validated
linear probe (what ``advisor recommend --data-dir`` measures first), the number of classes and the domain gap. The
backbone is not in the tree: every rule says "on the backbone whose linear probe is best" (among those the strategy
was measured with), the probe ranking being the one backbone rule the study supports.

- ``fidelity_``: share of the study's cells where the rules pick the advisor's strategy;
- ``advisor evaluate`` scores the rules like every other method (refitted per held-out dataset, from that fold's
  advisor), so their leave-one-dataset-out regret sits beside the advisor's and the constants'.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from advisor.baselines import measured_fallback, probe_ranked_backbones
from study.engine.store import NO_BACKBONE
from study.train.strategies import strategy_or_none

FEATURES = ("n_images", "best_probe", "n_classes", "gap")
LABELS = {"n_images": "n", "best_probe": "best linear probe", "n_classes": "classes", "gap": "domain gap"}


def cell_features(table: pd.DataFrame) -> pd.DataFrame:
    """One row per study cell of a gain-model table: ``FEATURES`` (classes and gap as the model filled them)."""
    cells = table.groupby(["dataset", "n_images", "image_size"], as_index=False).agg(
        best_probe=("best_probe", "first"), log2_classes=("log2_classes", "first"), gap=("gap", "first"))
    cells["n_classes"] = np.round(2.0 ** cells["log2_classes"]).astype(int)
    return cells


class ProbeRules:
    """A depth-``depth`` tree over ``FEATURES`` fitted to a fitted ``GainModel``'s first-choice strategies."""

    def __init__(self, depth: int = 2, min_leaf_share: float = 0.05, random_state: int = 0) -> None:
        self.depth = depth
        self.min_leaf_share = min_leaf_share
        self.random_state = random_state

    def fit(self, gain: Any) -> ProbeRules:
        """Distil ``gain`` (fitted; its training table ``gain.table_``): the advisor's pick in every study cell."""
        table = gain.table_.assign(pred=gain._predict_rows(gain.table_)).dropna(subset=["pred"])
        picks = table.loc[table.groupby(["dataset", "n_images", "image_size"])["pred"].idxmax()]
        cells = cell_features(table).merge(picks[["dataset", "n_images", "image_size", "strategy"]],
                                           on=["dataset", "n_images", "image_size"])  # fmt: skip
        x, y = cells[list(FEATURES)].to_numpy(float), cells["strategy"].to_numpy()
        leaf = max(1, int(self.min_leaf_share * len(y)))
        self.tree_ = DecisionTreeClassifier(max_depth=self.depth, random_state=self.random_state,
                                            min_samples_leaf=leaf).fit(x, y)  # fmt: skip
        self.fidelity_ = float((self.tree_.predict(x) == y).mean())
        self.n_cells_ = len(y)
        leaves = self.tree_.apply(x)
        self.rules_ = []
        for rule in tree_rules(self.tree_, FEATURES):
            nodes = rule.pop("nodes")
            self.rules_.append({**rule, "support": int(np.isin(leaves, nodes).sum())})
        return self

    def strategy(self, n_images: int, best_probe: float, n_classes: int | None, gap: float | None,
                 defaults: dict[str, float]) -> str:  # fmt: skip
        k = n_classes if n_classes else round(2 ** defaults["log2_classes"])
        g = gap if gap is not None and gap == gap else defaults["gap"]
        return str(self.tree_.predict(np.array([[n_images, best_probe, k, g]], dtype=float))[0])

    def pick(self, strategy: str, probes: pd.DataFrame, measured: list[tuple[str, str]]) -> tuple[str, str] | None:
        """The rule's strategy on the best-probe backbone it was measured with (fallback by freezing level)."""
        if (strategy, NO_BACKBONE) in measured:
            return strategy, NO_BACKBONE
        ranked = probe_ranked_backbones(probes)
        for backbone in ranked:
            if (strategy, backbone) in measured:
                return strategy, backbone
        return measured_fallback((strategy, ranked[0]), measured)

    def text(self) -> str:
        lines = [f"Rules of thumb distilled from the probe-based advisor (they pick its strategy in "
                 f"{self.fidelity_:.0%} of the study's {self.n_cells_} cells); measure the linear probe of each "
                 "backbone on your images first (advisor recommend --data-dir):"]  # fmt: skip
        for i, rule in enumerate(self.rules_, 1):
            when = " and ".join(_condition(name, lo, hi) for name, (lo, hi) in rule["conditions"].items())
            record = strategy_or_none(rule["strategy"])
            on = " on the backbone with the best probe" if record is None or record.uses_backbone else ""
            lines.append(f"  {i}. {'if ' + when if when else 'in every case'}: {rule['strategy']}{on}")
        return "\n".join(lines)


def _condition(name: str, lo: float, hi: float) -> str:
    label = LABELS[name]
    fmt = (lambda v: f"{v:.0f}") if name in ("n_images", "n_classes") else (lambda v: f"{v:.2f}")
    if not math.isfinite(lo):
        return f"{label} <= {fmt(hi)}"
    if not math.isfinite(hi):
        return f"{label} > {fmt(lo)}"
    return f"{fmt(lo)} < {label} <= {fmt(hi)}"


def tree_rules(tree: DecisionTreeClassifier, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """A fitted tree's leaves as rules (``conditions`` per feature of ``names``, ``strategy``, the leaf ``nodes``);
    sibling subtrees that pick the same strategy collapse into one rule. Shared with ``advisor.model``'s rules."""
    t = tree.tree_

    def walk(node: int, cond: dict[str, tuple[float, float]]) -> list[dict[str, Any]]:
        if t.children_left[node] == -1:
            return [{"conditions": cond, "strategy": str(tree.classes_[int(np.argmax(t.value[node][0]))]),
                     "nodes": [node]}]  # fmt: skip
        name, thr = names[t.feature[node]], float(t.threshold[node])
        lo, hi = cond.get(name, (-math.inf, math.inf))
        left = walk(t.children_left[node], {**cond, name: (lo, min(hi, thr))})
        right = walk(t.children_right[node], {**cond, name: (max(lo, thr), hi)})
        if len(left) == len(right) == 1 and left[0]["strategy"] == right[0]["strategy"]:
            return [{"conditions": cond, "strategy": left[0]["strategy"],
                     "nodes": left[0]["nodes"] + right[0]["nodes"]}]  # fmt: skip
        return left + right

    return walk(0, {})
