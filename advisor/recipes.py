"""What worked in the measured runs near a query, as a recipe: hyper-parameters, epochs run, what stays frozen.

The estimator (``advisor.model``) picks the runs; this module reads a recipe out of them and the strategy's record.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from study.train.strategies import strategy_or_none

RECIPE_PARAMS = ("lr_head", "lr_finetune", "dropout", "weight_decay", "top_k", "linear_c")
"""Hyper-parameters reported for a strategy this installation has no record of (its rows still count)."""


def recipe_from_runs(strategy: str, rows: pd.DataFrame) -> dict[str, Any]:
    """What worked in the nearest measured cells: the best run per cell, median hyper-parameters and epochs."""
    recipe: dict[str, Any] = {"strategy_recipe": _strategy_recipe(strategy)}
    best = rows.loc[rows.groupby(["dataset", "n_images", "image_size"])["accuracy"].idxmax()] if len(rows) else rows
    params = [p if isinstance(p, dict) else {} for p in best.get("params", pd.Series(dtype=object))]
    metrics = [m if isinstance(m, dict) else {} for m in best.get("metrics", pd.Series(dtype=object))]
    record = strategy_or_none(strategy)
    for name in record.params if record is not None else RECIPE_PARAMS:
        values = [p.get(name) for p in params]
        if name == "top_k":
            values = [m.get("top_k") or p.get("top_k") for m, p in zip(metrics, params, strict=True)]
        values = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if values:
            value = float(np.median(values))
            recipe[name] = int(round(value)) if name == "top_k" else float(f"{value:.3g}")
    epochs = _epochs_run(best.get("curves", pd.Series(dtype=object)))
    if epochs:
        recipe["epochs"] = epochs
    top_k = recipe.get("top_k", "k")
    recipe["freeze"] = record.freeze_text.format(top_k=top_k) if record is not None else ""
    recipe["from_cells"] = int(len(best))
    return recipe


def _strategy_recipe(strategy: str) -> str:
    """The record's recipe text; a strategy from another version of the study has none (its numbers still stand)."""
    record = strategy_or_none(strategy)
    return record.recipe if record is not None else ""


def _epochs_run(curves: pd.Series) -> dict[str, int]:
    """Median epochs actually run per training phase (early stopping included), from the learning curves."""
    per_phase: dict[str, list[int]] = {}
    for curve in curves:
        if not isinstance(curve, list):
            continue
        counts: dict[str, int] = {}
        for epoch in curve:
            if isinstance(epoch, dict):
                phase = str(epoch.get("phase", "train"))
                counts[phase] = counts.get(phase, 0) + 1
        for phase, n in counts.items():
            per_phase.setdefault(phase, []).append(n)
    return {phase: int(round(float(np.median(v)))) for phase, v in per_phase.items()}
