"""The fitted advisor as text: its rules of thumb, where they extrapolate, and how the traits were weighed.

Rendering only reads a fitted advisor's attributes (``FittedRules``); fitting, ranking and distilling the rules stay
in ``advisor.model``, which calls ``rules_text`` from ``Advisor.rules_text``.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import pandas as pd

from study.engine.store import NO_BACKBONE

IMBALANCE_NOTE_RATIO = 1.5
IMBALANCE_NOTE_MIN = 0.4


def imbalance_note(measured: dict[str, Any] | None, items: str = "training images") -> str | None:
    """A line for a folder whose largest class dominates: its accuracies must be read against always answering it.

    The study's datasets are mostly balanced, so an expected accuracy of 0.90 means little next to a class that holds
    88 % of the images; said when the largest class holds at least ``IMBALANCE_NOTE_RATIO`` times a balanced share
    (and at least ``IMBALANCE_NOTE_MIN``)."""
    if not measured or measured.get("imbalance") is None or not measured.get("n_classes"):
        return None
    share, k = float(measured["imbalance"]), int(measured["n_classes"])
    if share < max(IMBALANCE_NOTE_RATIO / k, IMBALANCE_NOTE_MIN):
        return None
    return (f"your largest class holds {share:.0%} of the {items}, so always answering it scores about {share:.3f}; "
            "read the accuracies against that (advisor train's metrics.json also reports balanced accuracy)")


class FittedRules(Protocol):
    """What the rules text reads from a fitted ``Advisor``: its fitted attributes and its ``shrinkage`` setting."""

    rules_: list[dict[str, Any]]
    rules_fidelity_: float
    fitted_on_: dict[str, Any]
    ranges_: dict[str, tuple[float, float]]
    runs_: pd.DataFrame
    selection_: dict[str, Any]
    bandwidth_: float
    shrinkage_: float
    shrinkage: Any


def rules_text(advisor: FittedRules) -> str:
    """The fitted advice as a few if-then rules over training-set size and domain gap."""
    lines = [
        f"Rules of thumb distilled from the advisor (fitted on {advisor.fitted_on_['n_rows']} runs over "
        f"{len(advisor.fitted_on_['datasets'])} datasets; they match its pick on {advisor.rules_fidelity_:.0%} of "
        "the study's datasets x sizes):"
    ]
    for i, rule in enumerate(advisor.rules_, start=1):
        parts = []
        for name, (lo, hi) in rule["conditions"].items():
            parts.append(_describe_condition(name, lo, hi))
        when = "if " + " and ".join(parts) if parts else "in every case"
        backbone = f" with {rule['backbone']}" if rule["backbone"] not in (None, NO_BACKBONE) else ""
        lines.append(f"  {i}. {when}: {rule['strategy']}{backbone}{_measured_note(advisor, rule)}")
    lo, hi = advisor.ranges_.get("gap", (math.nan, math.nan))
    lines.append(
        f"gap = Fréchet distance to natural photos relative to the study's natural-photo datasets (1 = as close as "
        f"they are; the study measured {lo:.2f}-{hi:.2f}). Sizes are labelled training images "
        f"(measured {advisor.ranges_['n_images'][0]:g}-{advisor.ranges_['n_images'][1]:g})."
    )
    lines.append(_selection_text(advisor))
    return "\n".join(lines)


def _measured_note(advisor: FittedRules, rule: dict[str, Any]) -> str:
    """Where a rule covers sizes at which its option was never measured, say so (the pick there extrapolates)."""
    runs = advisor.runs_[advisor.runs_["strategy"] == rule["strategy"]]
    if rule["backbone"] is not None:
        runs = runs[runs["backbone"] == rule["backbone"]]
    if runs.empty:
        return ""
    lo, hi = rule["conditions"].get("log2_n", (-math.inf, math.inf))
    study_lo, study_hi = advisor.ranges_["n_images"]
    lo_n, hi_n = (2**lo if math.isfinite(lo) else study_lo), (2**hi if math.isfinite(hi) else study_hi)
    seen_lo, seen_hi = float(runs["n_images"].min()), float(runs["n_images"].max())
    if seen_lo > lo_n or seen_hi < hi_n:
        return f" (measured at {seen_lo:g}-{seen_hi:g} images only)"
    return ""


def _selection_text(advisor: FittedRules) -> str:
    """How much the advice depends on the traits, and how that was decided."""
    sel = advisor.selection_
    chosen = bool(sel["candidates"])
    how = f"chosen by leave-one-dataset-out over {sel['inner_datasets']} datasets" if chosen else sel["rule"]
    if math.isinf(advisor.bandwidth_):
        why = ": no kernel over the traits predicted a held-out dataset's best option better" if chosen else ""
        return f"Traits: one ranking for every dataset ({how}{why})."
    shrinkage = f"shrinkage {advisor.shrinkage_:.2g}" + (" (estimated)" if advisor.shrinkage == "auto" else "")
    return f"Traits: kernel bandwidth {advisor.bandwidth_:g} ({how}), {shrinkage}."


def _describe_condition(name: str, lo: float, hi: float) -> str:
    if name == "log2_n":
        lo_n, hi_n = (2**lo if math.isfinite(lo) else None), (2**hi if math.isfinite(hi) else None)
        if lo_n is None:
            return f"n <= {hi_n:.0f} images"
        if hi_n is None:
            return f"n > {lo_n:.0f} images"
        return f"{lo_n:.0f} < n <= {hi_n:.0f} images"
    if not math.isfinite(lo):
        return f"gap <= {hi:.2f}"
    if not math.isfinite(hi):
        return f"gap > {lo:.2f}"
    return f"{lo:.2f} < gap <= {hi:.2f}"
