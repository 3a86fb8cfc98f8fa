"""Everything the HTML report shows, as plain tables and values gathered from the results store.

Why a module of its own: every number in the report comes from ``study.analysis.tables`` and ``study.analysis.stats``
(the same functions ``python -m study.analysis`` prints), so the report cannot disagree with them; the figures and
the template only format what is gathered here. Nothing here writes to the store.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from study.analysis import adaptation as da_analysis
from study.analysis import backbones as bb_analysis
from study.analysis import stats
from study.analysis import tables as analysis
from study.engine.store import NO_BACKBONE
from study.errors import StudyError
from study.train.strategies import is_text_strategy

ANCHORS_FILE = Path(__file__).with_name("anchors.toml")
JSON_COLUMNS = ("metrics", "curves", "params", "provenance")
SIMILARITY_SCORE = "frechet_distance"
"""The similarity score the report orders datasets by (lower = closer to ImageNet-like natural photos)."""


@dataclass
class ReportData:
    """The report's inputs: tidy frames from the study's analysis functions, plus run metadata."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    gains: pd.DataFrame
    best: pd.DataFrame
    similarity: pd.DataFrame
    datasets: pd.DataFrame
    status_counts: dict[str, int]
    source: str
    reference_backbone: str | None
    similarity_vs_gain: list[dict[str, Any]] = field(default_factory=list)
    backbones: pd.DataFrame = field(default_factory=pd.DataFrame)  # study.analysis.backbones.backbone_table
    backbone_correlations: pd.DataFrame = field(default_factory=pd.DataFrame)  # ... .rank_correlations
    backbone_mean_correlations: pd.DataFrame = field(default_factory=pd.DataFrame)  # ... .mean_rank_correlations
    adaptation: pd.DataFrame = field(default_factory=pd.DataFrame)  # study.analysis.adaptation (pair cells, #20)

    @property
    def dataset_order(self) -> list[str]:
        """Datasets from most to least similar to the pretraining data (unscored ones last)."""
        return list(self.datasets["dataset"])

    @property
    def negative_transfer(self) -> pd.DataFrame:
        # astype(bool): an empty object column is a list of labels to pandas, not a mask (a store of pair cells only)
        return self.gains[self.gains["negative_transfer"].astype(bool)].sort_values("gain").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------------
# Gathering
# ----------------------------------------------------------------------------------------------------------


def gather(store_or_frame: Any, n_boot: int = 2000) -> ReportData:
    """Read the store once (or take a frame of rows) and compute every table the report needs."""
    if isinstance(store_or_frame, pd.DataFrame):
        runs = _frame_rows(store_or_frame)
        sims = pd.DataFrame()
        status_counts = {"complete": len(runs)}
        source = "a DataFrame of result rows"
    else:
        store = store_or_frame
        runs = analysis.results_frame(store)
        sims = analysis.similarity_table(store)
        status_counts = dict(store.status_counts())
        source = str(getattr(store, "display_url", store))
    summary = stats.summarise(runs, n_boot=n_boot)
    gains = stats.transfer_gain(runs, n_boot=n_boot)
    best = analysis.best_per_cell(summary)
    reference = _reference_backbone(sims, runs)
    datasets = dataset_table(runs, sims, reference)
    corr = []
    if not sims.empty and gains["gain"].notna().any():
        for backbone in sorted(sims["backbone"].dropna().unique()):
            corr.append(analysis.similarity_vs_gain(gains, sims, backbone))
    bb_table = bb_analysis.backbone_table(runs, n_boot=n_boot)
    bb_corr = bb_analysis.rank_correlations(runs, n_boot=n_boot)
    bb_mean = bb_analysis.mean_rank_correlations(bb_corr, n_boot=n_boot)
    pairs = da_analysis.domain_adaptation_table(runs, n_boot=n_boot)  # empty without pair cells
    return ReportData(runs=runs, summary=summary, gains=gains, best=best, similarity=sims, datasets=datasets,
                      status_counts=status_counts, source=source, reference_backbone=reference,
                      similarity_vs_gain=corr, backbones=bb_table, backbone_correlations=bb_corr,
                      backbone_mean_correlations=bb_mean, adaptation=pairs)  # fmt: skip


def _frame_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Complete rows of a frame shaped like ``ResultsStore.to_frame()``, flattened like ``results_frame``."""
    if "status" in frame.columns:
        frame = frame[frame["status"] == "complete"]
    if frame.empty:
        raise StudyError("the results frame has no complete rows; run python -m study.run first")
    missing = [c for c in (*stats.CELL_KEYS, "seed", "accuracy", "majority_share") if c not in frame.columns]
    if missing:
        raise StudyError(f"the results frame lacks columns {', '.join(missing)}; pass ResultsStore.to_frame()")
    if "metrics" in frame.columns and "n_test" not in frame.columns:
        return analysis.flatten(frame.reset_index(drop=True))
    return frame.reset_index(drop=True)


def _reference_backbone(sims: pd.DataFrame, runs: pd.DataFrame) -> str | None:
    """The backbone whose similarity scores order the datasets: the one scored on most datasets."""
    if sims.empty or SIMILARITY_SCORE not in sims.columns:
        return None
    scored = sims.dropna(subset=[SIMILARITY_SCORE])
    if scored.empty:
        return None
    counts = scored.groupby("backbone")["dataset"].nunique()
    rows = runs["backbone"].value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], -int(rows.get(kv[0], 0)), kv[0]))
    return str(ranked[0][0])


def registry_domain(name: str) -> str:
    """A dataset's domain from the registry (rows may lack it); shift-ladder levels are "shifted"."""
    if "@" in name:
        return "shifted"
    from study.data.datasets import get_dataset  # light: no TensorFlow

    try:
        return str(get_dataset(name).domain)
    except StudyError:
        return "unknown"


def dataset_table(runs: pd.DataFrame, sims: pd.DataFrame, reference: str | None) -> pd.DataFrame:
    """One row per dataset with its domain and similarity scores, ordered from most to least similar.

    Scores come from the study's main input size (``study.analysis.tables.main_image_size``, as the gap-vs-gain figure):
    distances at different sizes are not comparable, so a dataset never scored at that size is listed unscored.
    """
    rows = []
    size = analysis.main_image_size(runs)
    sim_domains = {} if sims.empty else sims.dropna(subset=["domain"]).groupby("dataset")["domain"].first().to_dict()
    for name, group in runs.groupby("dataset", sort=True):
        domain = group["domain"].dropna() if "domain" in group.columns else pd.Series(dtype=object)
        if domain.empty:
            domain = pd.Series([sim_domains.get(name) or registry_domain(str(name))])
        n_classes = group["n_classes"].dropna() if "n_classes" in group.columns else pd.Series(dtype=float)
        rec: dict[str, Any] = {
            "dataset": name,
            "domain": str(domain.iloc[0]) if len(domain) else "unknown",
            "n_classes": int(n_classes.iloc[0]) if len(n_classes) else None,
            "rows": len(group),
            "sizes": ", ".join(str(int(n)) for n in sorted(group["n_images"].unique())),
        }
        for col in (SIMILARITY_SCORE, "logme", "knn_accuracy", "linear_probe_accuracy"):
            rec[col] = math.nan
        if reference is not None and not sims.empty:
            mine = sims[(sims["dataset"] == name) & (sims["backbone"] == reference)]
            if "image_size" in mine.columns and mine["image_size"].notna().any():
                mine = mine[mine["image_size"] == size]
            for col in (SIMILARITY_SCORE, "logme", "knn_accuracy", "linear_probe_accuracy"):
                if col in mine.columns and mine[col].notna().any():
                    rec[col] = float(_num(mine[col]).mean())
        rows.append(rec)
    table = pd.DataFrame(rows)
    table["_missing"] = table[SIMILARITY_SCORE].isna()
    table = table.sort_values(["_missing", SIMILARITY_SCORE, "dataset"]).drop(columns="_missing")
    return table.reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------------
# Overview: what was run, and findings written from the data
# ----------------------------------------------------------------------------------------------------------


def _num(values: pd.Series) -> pd.Series:
    """Numbers of a column that may hold None, pd.NA or nullable dtypes, as float64 with NaN."""
    return pd.to_numeric(values, errors="coerce").astype("float64")


def _names(values: pd.Series) -> list[str]:
    return sorted({str(v) for v in values.dropna()})


def run_info(data: ReportData) -> dict[str, Any]:
    """What was run and on what: grid, axes, hardware and time, read from the rows themselves."""
    runs = data.runs
    prov = [p for p in runs.get("provenance", pd.Series(dtype=object)) if isinstance(p, Mapping)]

    def prov_values(key: str) -> list[str]:
        return sorted({str(p[key]) for p in prov if p.get(key) is not None})

    started = pd.to_datetime(runs.get("started_at"), utc=True) if "started_at" in runs else pd.Series(dtype=object)
    finished = pd.to_datetime(runs.get("finished_at"), utc=True) if "finished_at" in runs else started
    compute = float(_num(runs["wall_seconds"]).sum()) if "wall_seconds" in runs else math.nan
    if not compute or math.isnan(compute):
        parts = [c for c in ("train_seconds", "extract_seconds", "eval_seconds") if c in runs]
        compute = float(sum(_num(runs[c]).sum() for c in parts)) if parts else math.nan
    first = started.min() if len(started) else None
    last = finished.max() if len(finished) else None
    span = (last - first).total_seconds() if first is not None and last is not None and pd.notna(first) else None
    return {
        "grids": _names(runs["grid"]) if "grid" in runs else [],
        "datasets": data.datasets.to_dict("records"),
        "backbones": [b for b in _names(runs["backbone"]) if b != NO_BACKBONE],
        "strategies": _names(runs["strategy"]),
        "sizes": sorted(int(n) for n in runs["n_images"].unique()),
        "seeds": sorted(int(s) for s in runs["seed"].unique()),
        "image_sizes": sorted(int(s) for s in runs["image_size"].unique()),
        "epochs": sorted(int(e) for e in runs["epochs_budget"].dropna().unique()) if "epochs_budget" in runs else [],
        "trials": sorted(int(t) for t in runs["trials_budget"].dropna().unique()) if "trials_budget" in runs else [],
        "rows": len(runs),
        "cells": len(data.summary),
        "degenerate": int(stats.mark_degenerate(runs)["degenerate"].sum()),
        "status_counts": data.status_counts,
        "hosts": prov_values("host"),
        "machines": prov_values("machine"),
        "cpus": prov_values("cpus"),
        "gpus": prov_values("gpus"),
        "software": {k: prov_values(k) for k in ("study", "tensorflow", "keras", "numpy", "python")},
        "compute_seconds": compute,
        "first_start": None if first is None or pd.isna(first) else first.strftime("%Y-%m-%d %H:%M UTC"),
        "last_finish": None if last is None or pd.isna(last) else last.strftime("%Y-%m-%d %H:%M UTC"),
        "span_seconds": span,
        "source": data.source,
    }


def domain_size_winners(data: ReportData) -> pd.DataFrame:
    """Per (domain, n_images): the strategy that wins most datasets there, its share and mean accuracy."""
    if data.best.empty:
        return pd.DataFrame(columns=["domain", "n_images", "strategy", "wins", "datasets", "mean_accuracy"])
    domains = data.datasets.set_index("dataset")["domain"]
    best = data.best.assign(domain=data.best["dataset"].map(domains).fillna("unknown"))
    rows = []
    for (domain, n), group in best.groupby(["domain", "n_images"], sort=True):
        counts = group["best_strategy"].value_counts()
        top = counts.max()
        winners = sorted(counts[counts == top].index)
        win_rows = group[group["best_strategy"].isin(winners)]
        rows.append({"domain": domain, "n_images": int(n), "strategy": " / ".join(winners), "wins": int(top),
                     "datasets": int(group["dataset"].nunique()),
                     "mean_accuracy": float(win_rows["accuracy"].mean())})  # fmt: skip
    return pd.DataFrame(rows)


def _cell(row: Mapping[str, Any], with_backbone: bool = True) -> str:
    bb = row.get("backbone")
    model = f"{row['strategy']}/{bb}" if with_backbone and bb and bb != NO_BACKBONE else str(row["strategy"])
    return f"{model} on {row['dataset']} at N={int(row['n_images'])}"


def _interval(row: Mapping[str, Any]) -> str:
    return f"{row['gain']:+.3f} [{row['gain_ci_low']:+.3f}, {row['gain_ci_high']:+.3f}]"


def key_findings(data: ReportData, winners: pd.DataFrame | None = None) -> list[str]:
    """Sentences written from the tables: winners per domain x size, where transfer hurt and helped most."""
    out: list[str] = []
    winners = domain_size_winners(data) if winners is None else winners
    for domain, group in winners.groupby("domain", sort=True):
        parts = []
        for r in group.itertuples():
            share = f", on {r.wins} of {r.datasets} datasets" if r.datasets > 1 else ""
            parts.append(f"N={r.n_images}: {r.strategy} ({r.mean_accuracy:.3f}{share})")
        out.append(f"Best strategy on {domain} data (mean test accuracy) — " + "; ".join(parts) + ".")
    keys = ["dataset", "n_images", "image_size"]
    tried = data.summary[keys].drop_duplicates()
    won = data.best[keys].drop_duplicates() if not data.best.empty else tried.iloc[0:0]
    empty = tried.merge(won, on=keys, how="left", indicator=True)
    empty = empty[empty["_merge"] == "left_only"]
    if len(empty):
        where = ", ".join(f"{r.dataset} at N={int(r.n_images)}" for r in empty.head(8).itertuples())
        more = f" and {len(empty) - 8} more" if len(empty) > 8 else ""
        out.append(f"Every model was degenerate (no better than the majority class) on {where}{more}: no strategy "
                   "can be recommended there from these results.")  # fmt: skip
    gains = data.gains
    pretrained = int(gains["gain"].notna().sum())
    neg = data.negative_transfer
    if pretrained == 0:
        out.append("No pretrained cell has a usable from-scratch baseline (none trained, or all degenerate), so "
                   "transfer cannot be compared with training from scratch in this run.")  # fmt: skip
    elif neg.empty:
        out.append(f"Transfer never hurt significantly: none of the {pretrained} pretrained cells with a baseline "
                   "is below its best from-scratch baseline with a 95 % interval excluding 0.")  # fmt: skip
    else:
        worst = "; ".join(f"{_cell(r)} ({_interval(r)})" for r in neg.head(3).to_dict("records"))
        out.append(f"Transfer hurt in {len(neg)} of {pretrained} pretrained cells (significantly below the best "
                   f"from-scratch baseline). Worst: {worst}.")  # fmt: skip
    helped = gains[gains["significant_gain"].astype(bool)].sort_values("gain", ascending=False)
    if pretrained and helped.empty:
        out.append("No pretrained cell beat its from-scratch baseline significantly.")
    elif not helped.empty:
        top = "; ".join(f"{_cell(r)} ({_interval(r)})" for r in helped.head(3).to_dict("records"))
        out.append(f"Transfer helped significantly in {len(helped)} of {pretrained} cells; most: {top}.")
    for corr in data.similarity_vs_gain:
        if "rho" in corr:
            out.append(f"Domain gap vs gain ({corr['backbone']}): Spearman ρ = {corr['rho']:+.2f} "
                       f"(p = {corr['p']:.3g}) over {corr['n_cells']} dataset × size cells at {corr['image_size']} px; "
                       "a negative ρ means "
                       "transfer gains less the further a dataset is from natural photos.")  # fmt: skip
    if not data.backbone_correlations.empty:
        out.extend(bb_analysis.summary_lines(data.backbone_correlations, data.backbone_mean_correlations))
    deg = int(stats.mark_degenerate(data.runs)["degenerate"].sum())
    if deg:
        out.append(f"{deg} of {len(data.runs)} trained models were degenerate (no better than the majority class) "
                   "and are excluded from every comparison.")  # fmt: skip
    failed = data.status_counts.get("failed", 0)
    if failed:
        out.append(f"{failed} cell(s) failed and have no result; rerun with python -m study.run --retry-failed.")
    return out


# ----------------------------------------------------------------------------------------------------------
# Learning curves, tables, anchors
# ----------------------------------------------------------------------------------------------------------


def _round(values: list[Any], digits: int = 4) -> list[float | None]:
    out: list[float | None] = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            out.append(None)
            continue
        out.append(round(f, digits) if math.isfinite(f) else None)
    return out


def has_curves(curves: Any) -> bool:
    """Whether a row recorded per-epoch curves (linear probes and some baselines have none)."""
    return isinstance(curves, list | Mapping) and len(curves) > 0


def curve_frame(curves: Any) -> pd.DataFrame:
    """A row's per-epoch curves as a frame with a running epoch across phases (head, then fine-tune).

    Takes the runner's list of per-epoch records and the column form ``{"loss": [...], ...}`` alike.
    """
    if not has_curves(curves):
        return pd.DataFrame()
    if isinstance(curves, Mapping):
        frame = pd.DataFrame({k: pd.Series(v) for k, v in curves.items() if isinstance(v, list)})
    else:
        frame = pd.DataFrame([c for c in curves if isinstance(c, Mapping)])
    if frame.empty:
        return frame
    frame["step"] = np.arange(1, len(frame) + 1)
    if "phase" not in frame.columns:
        frame["phase"] = "train"
    return frame


def curves_payload(runs: pd.DataFrame) -> dict[str, Any]:
    """Every row's learning curves as compact JSON-ready data for the in-page chart (one entry per row)."""
    cells: dict[str, Any] = {}
    for row in runs.sort_values(["dataset", "n_images", "strategy", "backbone", "seed"]).to_dict("records"):
        frame = curve_frame(row.get("curves"))
        if frame.empty:
            continue
        entry: dict[str, Any] = {
            "label": f"{row['strategy']} / {row['backbone']} · N={int(row['n_images'])} · seed {int(row['seed'])}",
            "dataset": str(row["dataset"]),
            "phase": [str(p) for p in frame["phase"]],
        }
        for col in ("accuracy", "val_accuracy", "loss", "val_loss"):
            entry[col] = _round(list(frame[col])) if col in frame.columns else []
        cells[str(row["cell_key"]) if "cell_key" in row else f"row{len(cells)}"] = entry
    return cells


def table_columns(runs: pd.DataFrame) -> list[str]:
    """The runs table's columns: every scalar column; JSON blobs and per-example vectors go to the downloads."""
    skip = {"correct", "metrics", "curves", "provenance"}
    return [c for c in runs.columns if c not in skip]


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every complete row with every scalar column (``params`` as compact JSON text)."""
    table = runs[table_columns(runs)].copy()
    if "params" in table.columns:
        table["params"] = table["params"].map(
            lambda p: json.dumps(p, sort_keys=True, separators=(",", ":")) if isinstance(p, Mapping) else p
        )
    return table.sort_values([c for c in ("dataset", "n_images", "strategy", "backbone", "seed") if c in table])


def load_anchors(path: Path = ANCHORS_FILE) -> list[dict[str, Any]]:
    """The published numbers of ``anchors.toml``; a malformed file is a one-line StudyError."""
    try:
        with path.open("rb") as fh:
            entries = tomllib.load(fh).get("anchor", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StudyError(f"cannot read the anchors file {path}: {exc}") from None
    for i, entry in enumerate(entries):
        missing = [k for k in ("id", "dataset", "source", "url", "metric", "value", "ours", "protocol_differences")
                   if k not in entry]  # fmt: skip
        if missing:
            raise StudyError(f"anchor #{i + 1} in {path} lacks {', '.join(missing)}")
        if entry["metric"] not in ("accuracy", "roc_auc"):
            raise StudyError(f"anchor {entry['id']!r}: metric must be accuracy or roc_auc, got {entry['metric']!r}")
    return entries


def cell_metric_means(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean of a metric per cell over its non-degenerate rows (degenerate models never stand for a cell)."""
    good = stats.mark_degenerate(runs)
    good = good[~good["degenerate"]]
    keys = list(stats.with_pair_keys(good, stats.CELL_KEYS))  # a pair cell's N_t and source are part of the cell
    if good.empty or metric not in good.columns:
        return pd.DataFrame(columns=[*keys, "value", "n_seeds"])
    grouped = good.groupby(keys, dropna=False)[metric]
    return pd.DataFrame({"value": grouped.mean(), "n_seeds": grouped.count()}).reset_index()


def _closest_size(sizes: pd.Series, published: Any) -> int:
    """Our image size nearest the published one (the largest where the source gives none, e.g. "native")."""
    ours = sorted(int(v) for v in sizes.unique())
    if not isinstance(published, int | float):
        return ours[-1]
    return min(ours, key=lambda v: (abs(v - published), -v))


def _pair_match(cand: pd.DataFrame, sel: Mapping[str, Any]) -> pd.DataFrame:
    """An anchor's ``ours.source`` / ``ours.n_target_labels`` pick domain-adaptation cells (#20); an anchor without
    them matches ordinary cells only (a pair cell of the same target dataset answers another question)."""
    if "source" not in cand.columns:
        return cand.iloc[0:0] if "source" in sel else cand
    if "source" not in sel:
        return cand[cand["source"].isna()]
    cand = cand[cand["source"] == sel["source"]]
    if "n_target_labels" in sel:
        cand = cand[cand["n_target_labels"] == int(sel["n_target_labels"])]
    return cand


def input_unit(strategy: Any) -> str:
    """What a cell's ``image_size`` counts: tokens for a text strategy (its token budget), else pixels."""
    return "tokens" if is_text_strategy(strategy) else "px"


def anchor_rows(data: ReportData, anchors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each published number beside our matching cell (best of the selected strategies), or a note why none."""
    means = {m: cell_metric_means(data.runs, m) for m in ("accuracy", "roc_auc")}
    rows = []
    for a in anchors:
        sel: Mapping[str, Any] = a["ours"]
        table = means[a["metric"]]
        cand = table[(table["dataset"] == a["dataset"]) & table["value"].notna()]
        strategies = sel.get("strategies", "any")
        if strategies != "any":
            cand = cand[cand["strategy"].isin(list(strategies))]
        if sel.get("backbone"):
            cand = cand[cand["backbone"] == sel["backbone"]]
        cand = _pair_match(cand, sel)
        n_sel = sel.get("n_images", "max")
        if not cand.empty:
            n = cand["n_images"].max() if n_sel == "max" else int(n_sel)
            cand = cand[cand["n_images"] == n]
            cand = cand[cand["image_size"] == _closest_size(cand["image_size"], a.get("image_size"))]
        row = {**a, "ours_value": None, "ours_cell": None, "difference": None, "ours_seeds": 0,
               "ours_image_size": None, "ours_n_images": None, "ours_unit": "px"}  # fmt: skip
        if cand.empty:
            row["ours_note"] = "no matching cell in this run"
        else:
            top = cand.sort_values("value", ascending=False).iloc[0]
            row.update(ours_value=float(top["value"]), difference=float(top["value"]) - float(a["value"]),
                       ours_cell=f"{top['strategy']}/{top['backbone']}", ours_seeds=int(top["n_seeds"]),
                       ours_image_size=int(top["image_size"]), ours_n_images=int(top["n_images"]),
                       ours_unit=input_unit(top["strategy"]), ours_note="")  # fmt: skip
        rows.append(row)
    return rows


def pair_anchor_rows(rows: list[dict[str, Any]], targets: set[str]) -> list[dict[str, Any]]:
    """The anchor rows that belong to the domain-adaptation section: an ``ours.source`` selection (a pair cell)
    on one of the run's target datasets."""
    return [r for r in rows if "source" in r["ours"] and r["dataset"] in targets]
