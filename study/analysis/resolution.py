"""Do the conclusions drawn at one input size hold at another? The resolution slice of the reference study.

The study runs at 64 px to fit 2 CPU cores; the ``broad-128`` slice reruns the cached strategies at 128 px on the
datasets whose images are at least that large. For every (dataset, N, strategy, backbone) measured at both sizes:
the accuracy at each and the difference with a 95 % interval (``stats.row_difference``: paired over the same test
images when both sides store per-example correctness); per (dataset, N): whether the best option, and the best
strategy, at the smaller size is also the best at the larger one.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from study.analysis import stats

OPTION = ["strategy", "backbone"]
CELL = ["dataset", "n_images"]


def _usable(frame: pd.DataFrame) -> pd.DataFrame:
    frame = stats.mark_degenerate(frame)
    frame = frame[~frame["degenerate"] & frame["accuracy"].notna()]
    return frame[~stats.is_pair(frame)] if len(frame) else frame


def size_pairs(frame: pd.DataFrame) -> tuple[int, int] | None:
    """(the main size, the largest other size with shared cells), or None when no cell has two sizes."""
    ok = _usable(frame)
    if ok.empty or ok["image_size"].nunique() < 2:
        return None
    main = int(ok["image_size"].value_counts().idxmax())
    keys = [*CELL, *OPTION]
    at_main = set(map(tuple, ok[ok["image_size"] == main][keys].drop_duplicates().to_numpy().tolist()))
    others = []
    for size, rows in ok[ok["image_size"] != main].groupby("image_size"):
        shared = set(map(tuple, rows[keys].drop_duplicates().to_numpy().tolist())) & at_main
        if shared:
            others.append((len(shared), int(size)))
    return (main, max(others)[1]) if others else None


def resolution_table(frame: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """One row per option measured at both sizes of ``size_pairs``: accuracies, difference and its interval."""
    sizes = size_pairs(frame)
    if sizes is None:
        return pd.DataFrame()
    small, large = sorted(sizes)
    ok = _usable(frame)
    rows = []
    for key, group in ok[ok["image_size"].isin([small, large])].groupby([*CELL, *OPTION]):
        a, b = group[group["image_size"] == large], group[group["image_size"] == small]
        if a.empty or b.empty:
            continue
        diff, low, high = stats.row_difference(a, b, n_boot=n_boot)
        rows.append({**dict(zip([*CELL, *OPTION], key, strict=True)), f"acc_{small}": float(b["accuracy"].mean()),
                     f"acc_{large}": float(a["accuracy"].mean()), "difference": diff, "ci_low": low, "ci_high": high,
                     "significant": bool(low > 0 or high < 0)})  # fmt: skip
    return pd.DataFrame(rows)


def agreement(table: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, N): the best option and best strategy at each size, among the options measured at both."""
    if table.empty:
        return table
    small, large = sorted(int(c.split("_")[1]) for c in table.columns if c.startswith("acc_"))
    rows = []
    for key, cell in table.groupby(CELL):
        best_small = cell.loc[cell[f"acc_{small}"].idxmax()]
        best_large = cell.loc[cell[f"acc_{large}"].idxmax()]
        rows.append({**dict(zip(CELL, key, strict=True)), "options": len(cell),
                     f"best_{small}": f"{best_small['strategy']}/{best_small['backbone']}",
                     f"best_{large}": f"{best_large['strategy']}/{best_large['backbone']}",
                     "same_option": best_small["strategy"] == best_large["strategy"]
                     and best_small["backbone"] == best_large["backbone"],
                     "same_strategy": best_small["strategy"] == best_large["strategy"],
                     "regret_of_small_pick": float(best_large[f"acc_{large}"] - best_small[f"acc_{large}"]),
                     })  # fmt: skip
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> dict[str, Any]:
    """Headline figures: mean difference per strategy, share of significant changes, agreement of the picks."""
    if table.empty:
        return {}
    agree = agreement(table)
    by_strategy = table.groupby("strategy")["difference"].mean().round(4).to_dict()
    return {"options": len(table), "cells": len(agree), "mean_difference_by_strategy": by_strategy,
            "significant_up": int(((table["ci_low"] > 0)).sum()), "significant_down": int((table["ci_high"] < 0).sum()),
            "same_best_option": float(agree["same_option"].mean()),
            "same_best_strategy": float(agree["same_strategy"].mean()),
            "mean_regret_of_small_pick": float(agree["regret_of_small_pick"].mean())}  # fmt: skip
