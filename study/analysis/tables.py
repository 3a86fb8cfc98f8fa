"""What the results say: tidy tables built from the store, read-only (a failed analysis never touches results).

``python -m study.analysis [--store URL] [--backbone B]`` prints, as Markdown:
- the best strategy per dataset x size (mean accuracy and 95 % interval, runner-up and margin);
- every pretrained cell's gain over the best from-scratch baseline, with the cells showing significant
  negative transfer and the largest significant gains;
- the domain-similarity scores per dataset, and the Spearman rank correlation between the domain gap and the
  measured gain of transfer over scratch;
- the backbones: transfer accuracy beside ImageNet top-1 and cost, and their rank correlation per dataset
  (``study.analysis.backbones``);
- domain adaptation (pair cells): source-only / DANN / target-only / source-then-target per pair and N_t
  (``study.analysis.adaptation``).
The same functions feed the HTML report and the advisor.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import numpy as np
import pandas as pd

from study.analysis import stats
from study.cli_support import add_verbose_flag, quiet_tensorflow
from study.errors import StudyError

FLATTENED = ("correct", "n_test", "n_classes", "top_prediction_share", "shift", "shift_level", "base_dataset",
             "val_balanced_accuracy", "trials_run", "trials_pruned", "degenerate_retries", "wall_seconds",
             "pool_majority_share", "n_train", "n_val")  # fmt: skip


def results_frame(store: Any) -> pd.DataFrame:
    """Complete rows with the per-row details the statistics need lifted out of the ``metrics`` JSON."""
    frame = store.to_frame(status="complete")
    if frame.empty:
        raise StudyError(no_complete_rows(store))
    return flatten(frame)


def no_complete_rows(store: Any) -> str:
    """Why a store has nothing to analyse, and what to run: empty, every cell failed, or cells still running."""
    counts = store.status_counts()
    where = f"the results store {store.display_url}"
    failed, running = counts.get("failed", 0), counts.get("running", 0)
    if failed and not running:
        errors = [r.get("error") for r in store.rows(status="failed")]
        # the last line of a stored traceback is the exception itself
        first = next((str(e).strip().splitlines()[-1][:200] for e in errors if e and str(e).strip()), "none recorded")
        every = f"all {failed} of its cells" if failed > 1 else "its only cell"
        return (f"{where} has no complete rows: {every} failed (first error: {first}); fix the cause, then rerun "
                "the same python -m study.run command with --retry-failed")  # fmt: skip
    if running:
        return (f"{where} has no complete rows yet: {running} cell(s) are running ({failed} failed); wait for the "
                "sweep to finish, or rerun the same python -m study.run command to take over a dead one")  # fmt: skip
    return f"{where} has no complete rows; run python -m study.run first"


def flatten(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    metrics = frame["metrics"].map(lambda m: m if isinstance(m, dict) else {})
    for key in FLATTENED:
        frame[key] = metrics.map(lambda m, k=key: m.get(k))
    return frame


def best_per_cell(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, n_images, image_size): the winning (strategy, backbone), its interval, runner-up, margin.

    Pair cells (``source`` set) compete only within their own (source, N_t): they are another question."""
    rows = []
    keys = list(stats.with_pair_keys(summary, ("dataset", "n_images", "image_size")))
    for key, group in summary.dropna(subset=["accuracy_mean"]).groupby(keys, sort=True, dropna=False):
        ranked = group.sort_values("accuracy_mean", ascending=False)
        top = ranked.iloc[0]
        second = ranked.iloc[1] if len(ranked) > 1 else None
        rows.append({
            **dict(zip(keys, key, strict=True)),
            "best_strategy": top["strategy"], "best_backbone": top["backbone"],
            "accuracy": top["accuracy_mean"], "ci_low": top["accuracy_ci_low"], "ci_high": top["accuracy_ci_high"],
            "runner_up": None if second is None else f"{second['strategy']}/{second['backbone']}",
            "margin": math.nan if second is None else top["accuracy_mean"] - second["accuracy_mean"],
        })  # fmt: skip
    return pd.DataFrame(rows)


def similarity_table(store: Any, backbone: str | None = None) -> pd.DataFrame:
    """One row per (dataset, backbone, size) with its domain label and scores."""
    rows = []
    for ds in store.datasets():
        for scores in (ds.get("similarity") or {}).values():
            if backbone and scores.get("backbone") != backbone:
                continue
            rows.append({"dataset": ds["name"], "domain": ds.get("domain"), "backbone": scores.get("backbone"),
                         "image_size": scores.get("image_size"),
                         **{k: scores.get(k) for k in ("frechet_distance", "logme", "knn_accuracy",
                                                       "linear_probe_accuracy", "seconds")}})  # fmt: skip
    return pd.DataFrame(rows)


def best_gain(gains: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, n_images, image_size): the best pretrained strategy's gain over the best scratch baseline."""
    ok = gains.dropna(subset=["gain"])
    idx = ok.groupby(["dataset", "n_images", "image_size"])["gain"].idxmax()
    return ok.loc[idx].reset_index(drop=True)


def main_image_size(frame: pd.DataFrame) -> int | None:
    """The input size with the most rows: where domain gaps are compared (they are not comparable across sizes)."""
    sizes = frame["image_size"].dropna() if "image_size" in frame.columns else pd.Series(dtype=float)
    return int(sizes.value_counts().idxmax()) if len(sizes) else None


def gap_vs_gain_cells(gains: pd.DataFrame, sims: pd.DataFrame, backbone: str) -> pd.DataFrame:
    """Each (dataset, N) cell's best transfer gain beside its dataset's domain gap and domain label.

    Within one image size: a Fréchet distance's scale depends on the input size, so distances measured at
    different sizes are not comparable. The size with the most cells is kept (``main_image_size``).
    """
    best = best_gain(gains)
    if sims.empty or best.empty:
        return best.iloc[0:0].assign(domain=None, frechet_distance=None)
    s = sims[sims["backbone"] == backbone][["dataset", "image_size", "domain", "frechet_distance"]]
    merged = best.drop(columns="domain", errors="ignore").merge(s, on=["dataset", "image_size"])
    merged = merged.dropna(subset=["frechet_distance", "gain"])
    if merged.empty:
        return merged
    return merged[merged["image_size"] == main_image_size(merged)].reset_index(drop=True)


def similarity_vs_gain(gains: pd.DataFrame, sims: pd.DataFrame, backbone: str) -> dict[str, Any]:
    """Spearman rank correlation between the domain gap (Fréchet distance) and the best gain of transfer, over
    the cells of ``gap_vs_gain_cells`` (one image size, recorded)."""
    from scipy.stats import spearmanr

    merged = gap_vs_gain_cells(gains, sims, backbone)
    size = int(merged["image_size"].iloc[0]) if len(merged) else None
    out: dict[str, Any] = {"backbone": backbone, "image_size": size, "n_cells": len(merged)}
    if len(merged) >= 3:
        rho, p = spearmanr(merged["frechet_distance"], merged["gain"])
        out.update(rho=float(rho), p=float(p))
        per_size = {}
        for n, g in merged.groupby("n_images"):
            if len(g) >= 3:
                r, pv = spearmanr(g["frechet_distance"], g["gain"])
                per_size[int(n)] = {"rho": float(r), "p": float(pv), "datasets": len(g)}
        out["per_size"] = per_size
    return out


def _md(frame: pd.DataFrame, floatfmt: str = ".3f") -> str:
    if frame.empty:
        return "(none)"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in frame.iterrows():
        cells = [format(v, floatfmt) if isinstance(v, float | np.floating) else str(v) for v in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from study.engine.store import ResultsStore, default_url

    p = argparse.ArgumentParser(prog="python -m study.analysis", description=__doc__.splitlines()[0])
    p.add_argument("--store", help="SQLAlchemy URL (default: sqlite:///results/study.db)")
    p.add_argument("--backbone", default="mobilenet_v2", help="backbone whose similarity scores to correlate")
    add_verbose_flag(p)
    args = p.parse_args(argv)
    quiet_tensorflow(args.verbose)
    try:
        store = ResultsStore(args.store or default_url(), create=False)
        frame = results_frame(store)
        summary = stats.summarise(frame)
        gains = stats.transfer_gain(frame)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n_deg = int(stats.mark_degenerate(frame)["degenerate"].sum())
    print(f"# Results: {len(frame)} complete rows, {len(summary)} cells, {n_deg} degenerate rows excluded\n")
    print("## Best strategy per dataset x size (mean test accuracy over seeds, 95 % CI)\n")
    print(_md(best_per_cell(summary)))
    cols = ["dataset", "n_images", "strategy", "backbone", "accuracy", "baseline_strategy", "baseline_accuracy",
            "gain", "gain_ci_low", "gain_ci_high"]  # fmt: skip
    print("\n## Significant negative transfer (pretrained below the best from-scratch baseline, CI excludes 0)\n")
    # .loc with a bool mask: an empty (object-typed) column would otherwise select columns, not rows
    print(_md(gains.loc[gains["negative_transfer"].astype(bool), cols].sort_values("gain")))
    print("\n## Largest significant gains over scratch\n")
    print(_md(gains.loc[gains["significant_gain"].astype(bool), cols].sort_values("gain", ascending=False).head(15)))
    sims = similarity_table(store)
    print("\n## Domain similarity (Fréchet distance to natural photos: lower = closer; LogME: higher = better)\n")
    print(_md(sims.sort_values(["backbone", "frechet_distance"]) if not sims.empty else sims))
    if not sims.empty:
        corr = similarity_vs_gain(gains, sims, args.backbone)
        print(f"\n## Domain gap vs gain of transfer ({args.backbone})\n")
        print(corr)
    print_backbones(frame)
    print_resolution(frame)
    print_domain_adaptation(frame)
    return 0


def print_resolution(frame: pd.DataFrame) -> None:
    """The resolution slice (#21): options measured at two input sizes, and whether the best pick agrees."""
    from study.analysis import resolution

    table = resolution.resolution_table(frame)
    if table.empty:
        return
    print("\n## Resolution: the same options at two input sizes (difference = larger - smaller, 95 % CI)\n")
    print(_md(table))
    print("\n## Resolution: does the best option at the smaller size stay best at the larger one?\n")
    print(_md(resolution.agreement(table)))
    print(f"\n{resolution.summary(table)}")


def print_domain_adaptation(frame: pd.DataFrame) -> None:
    """The pair cells (#20): per source -> target and N_t, each recipe's target accuracy with its 95 % interval."""
    from study.analysis import adaptation

    table = adaptation.domain_adaptation_table(frame)
    if table.empty:
        return
    print("\n## Domain adaptation: target test accuracy per pair and N_t (mean over seeds, 95 % CI)\n")
    print(adaptation.markdown(table))


def print_backbones(frame: pd.DataFrame) -> None:
    """The report's Backbones section as Markdown: accuracy vs ImageNet top-1, ρ per dataset, mean ρ."""
    from study.analysis import backbones

    table = backbones.backbone_table(frame)
    if table.empty:
        return
    corr = backbones.rank_correlations(frame)
    means = backbones.mean_rank_correlations(corr)
    print("\n## Backbones: transfer accuracy beside ImageNet top-1 (%) and cost\n")
    print(_md(table))
    print("\n## ImageNet top-1 vs transfer accuracy: Spearman ρ per dataset (95 % CI: seeds and test examples)\n")
    cols = ["dataset", "n_images", "image_size", "strategy", "n_backbones", "rho", "rho_ci_low", "rho_ci_high", "p",
            "note"]  # fmt: skip
    print(_md(corr[cols]))
    print("\n## Mean ρ over datasets (95 % CI: datasets resampled)\n")
    print(_md(means))


if __name__ == "__main__":
    sys.exit(main())
