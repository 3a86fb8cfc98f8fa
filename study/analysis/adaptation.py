"""The domain-adaptation table (#20): per (source, target) pair and N_t, each recipe's target accuracy side by side.

A pair cell's ``dataset`` is its target, ``n_images`` its labelled *source* images, ``source`` and
``n_target_labels`` (N_t) the pair axis. Each recipe comes on two networks (cached backbone features with an
adapter, or the DANN paper's small CNN: strategy names ending ``_cnn``); the table keeps them on separate rows so
a recipe is only ever compared with the others on the same network.
"""

from __future__ import annotations

import pandas as pd

from study.analysis import stats

RECIPES: tuple[str, ...] = ("source_only", "dann", "target_only", "source_then_target")
CNN_SUFFIX = "_cnn"
KEYS: tuple[str, ...] = ("source", "dataset", "n_target_labels", "n_images", "image_size", "network")


def _network(strategy: str, backbone: object) -> tuple[str, str]:
    """(recipe, network) of a pair strategy name: ``dann_cnn`` -> (dann, small CNN)."""
    if strategy.endswith(CNN_SUFFIX):
        return strategy[: -len(CNN_SUFFIX)], "small CNN"
    return strategy, f"{backbone} features"


def domain_adaptation_table(frame: pd.DataFrame, n_boot: int = 2000, level: float = 0.95) -> pd.DataFrame:
    """One row per pair x N_t x network: each recipe's mean target test accuracy over seeds with its interval.

    Built from ``stats.summarise`` (degenerate rows excluded, intervals over seeds and test examples). Columns per
    recipe: ``<recipe>`` (mean), ``<recipe>_ci_low``, ``<recipe>_ci_high``, ``<recipe>_seeds``; a recipe not run
    (``target_only`` at N_t = 0) is NaN. ``dann_minus_source_only`` is the plain difference of the means. Empty when
    the frame has no pair cells.
    """
    pairs = frame[stats.is_pair(frame)]
    cols = [*KEYS, *(f"{r}{s}" for r in RECIPES for s in ("", "_ci_low", "_ci_high", "_seeds")),
            "dann_minus_source_only"]  # fmt: skip
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    summary = stats.summarise(pairs, n_boot=n_boot, level=level)
    named = summary.apply(lambda r: _network(str(r["strategy"]), r["backbone"]), axis=1, result_type="expand")
    summary = summary.assign(recipe=named[0], network=named[1])
    summary = summary[summary["recipe"].isin(RECIPES)]
    rows = []
    for key, group in summary.groupby(list(KEYS), sort=True, dropna=False):
        rec: dict[str, object] = dict(zip(KEYS, key, strict=True))
        by = group.set_index("recipe")
        for r in RECIPES:
            hit = by.loc[r] if r in by.index else None
            rec[r] = float("nan") if hit is None else hit["accuracy_mean"]
            rec[f"{r}_ci_low"] = float("nan") if hit is None else hit["accuracy_ci_low"]
            rec[f"{r}_ci_high"] = float("nan") if hit is None else hit["accuracy_ci_high"]
            rec[f"{r}_seeds"] = 0 if hit is None else int(hit["n_seeds"])
        rec["dann_minus_source_only"] = rec["dann"] - rec["source_only"]  # type: ignore[operator]
        rows.append(rec)
    out = pd.DataFrame.from_records(rows, columns=cols)
    out["n_target_labels"] = out["n_target_labels"].astype(int)
    return out


def markdown(table: pd.DataFrame) -> str:
    """The table as Markdown, one cell per recipe: ``mean [low, high]`` (``-`` where the recipe was not run)."""
    if table.empty:
        return "(no pair cells)"
    head = ["source → target", "N_t", "source images", "px", "network", *RECIPES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        cells = [f"{r['source']} → {r['dataset']}", str(r["n_target_labels"]), str(r["n_images"]),
                 str(r["image_size"]), str(r["network"])]  # fmt: skip
        for name in RECIPES:
            mean, low, high = r[name], r[f"{name}_ci_low"], r[f"{name}_ci_high"]
            cells.append("-" if pd.isna(mean) else f"{mean:.3f} [{low:.3f}, {high:.3f}]")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versus(table: pd.DataFrame, recipe: str, other: str) -> pd.DataFrame:
    """Each row where both recipes were measured: the difference of means and whether the intervals separate.

    ``verdict`` is ``above`` (``recipe``'s whole interval above ``other``'s), ``below``, or ``overlapping``: a
    conservative reading of two 95 % intervals, the one the report and the advisor state.
    """
    cols = [*KEYS, "difference", "verdict"]
    both = table.dropna(subset=[recipe, other]) if len(table) else table
    if both.empty:
        return pd.DataFrame(columns=cols)
    above = both[f"{recipe}_ci_low"] > both[f"{other}_ci_high"]
    below = both[f"{recipe}_ci_high"] < both[f"{other}_ci_low"]
    verdict = ["above" if a else ("below" if b else "overlapping") for a, b in zip(above, below, strict=True)]
    return both[list(KEYS)].assign(difference=both[recipe] - both[other], verdict=verdict).reset_index(drop=True)


def best_recipe(row: pd.Series) -> str | None:
    """The recipe with the highest mean on one table row (None when none was measured); a tie goes to the recipe
    listed first in ``RECIPES`` (the simpler one: source_only before dann)."""
    means = {r: float(row[r]) for r in RECIPES if pd.notna(row[r])}
    return max(means, key=lambda r: means[r]) if means else None


def findings(table: pd.DataFrame) -> list[str]:
    """Sentences read off the table: DANN against source-only without and with target labels, and which recipe
    has the highest mean at each N_t. Empty when the table is."""
    if table.empty:
        return []
    out = []
    for labelled, words in ((False, "Without target labels (N_t = 0)"), (True, "With target labels (N_t > 0)")):
        rows = table[(table["n_target_labels"] > 0) == labelled]
        cmp = versus(rows, "dann", "source_only")
        if cmp.empty:
            continue
        counts = cmp["verdict"].value_counts()
        higher = int((cmp["difference"] > 0).sum())
        out.append(f"{words}, DANN's 95 % interval lies wholly above source-only's on {int(counts.get('above', 0))} "
                   f"of {len(cmp)} pair × network rows and wholly below on {int(counts.get('below', 0))} (its mean "
                   f"is higher on {higher}); the rest overlap.")  # fmt: skip
    for n_t, rows in table[table["n_target_labels"] > 0].groupby("n_target_labels"):
        wins = rows.apply(best_recipe, axis=1).value_counts()
        listed = ", ".join(f"{name} {int(k)}" for name, k in wins.items())
        out.append(f"Highest mean at N_t = {int(n_t)} (of {len(rows)} rows): {listed}.")
    return out
