"""What the report's template gets: every section's tables, figures and notes, computed from the gathered data.

``context`` assembles them; the sections (figures, backbones, advisor, deployment, anchors) are built here
from ``reports.data`` and formatted with ``reports.formatting``; the template only lays them out. A failing
figure or advisor becomes a note in its section, never a failed report.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from reports import data as rdata
from reports import figures as rfig
from reports import text as rtext
from reports.formatting import duration, table
from study.analysis import adaptation as da_analysis
from study.analysis import backbones as bb_analysis
from study.analysis import tables as analysis
from study.engine.store import NO_BACKBONE
from study.train.deploy import VARIANTS

REPO = Path(__file__).resolve().parents[1]
NEGATIVE_COLUMNS = ["dataset", "n_images", "strategy", "backbone", "image_size", "accuracy", "baseline_strategy",
                    "baseline_backbone", "baseline_accuracy", "gain", "gain_ci_low", "gain_ci_high", "n_seeds",
                    "baseline_n_seeds"]  # fmt: skip
"""The negative-transfer tables' columns (the main one and the text section's)."""


def gain_key(rec: Mapping[str, Any]) -> str:
    """Identity of a pretrained cell in the gain tables (what the tests compare with ``transfer_gain``)."""
    return "|".join(str(rec[k]) for k in ("dataset", "n_images", "backbone", "image_size", "strategy"))


def best_key(rec: Mapping[str, Any]) -> str:
    """Identity of a row of the winners table: dataset, N and image size, plus source and N_t for a pair cell
    (pair cells of one target share the first three)."""
    key = f"{rec['dataset']}|{rec['n_images']}|{rec['image_size']}"
    source = rec.get("source")
    return key if source is None or pd.isna(source) else f"{key}|{source}|{int(rec['n_target_labels'])}"


def _negative_class(rec: Mapping[str, Any]) -> str:
    return "negative" if rec.get("negative_transfer") else ("gain" if rec.get("significant_gain") else "")


# ----------------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------------


def _figure(make: Callable[[], rfig.Figure], caption: str) -> dict[str, Any]:
    """A figure for the template, or the reason it is missing (an empty figure never fails the report)."""
    try:
        fig = make()
    except rfig.NoData as exc:
        return {"uri": None, "alt": "", "caption": caption, "note": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a plotting bug must not cost the rest of the report; say so loudly
        print(f"warning: a report figure failed ({type(exc).__name__}: {exc})", file=sys.stderr)
        return {"uri": None, "alt": "", "caption": caption, "note": f"the figure failed ({type(exc).__name__}: {exc})"}
    return {"uri": fig.data_uri, "alt": fig.alt, "caption": caption, "note": ""}


def similarity_labels(datasets: pd.DataFrame, newline: bool = True) -> dict[str, str]:
    """Facet titles: dataset name with its domain label and its Fréchet distance to natural photos, where measured."""
    sep = "\n" if newline else " "
    out = {}
    for rec in datasets.to_dict("records"):
        fd, domain = rec.get(rdata.SIMILARITY_SCORE), rec.get("domain") or "unknown"
        score = "" if fd is None or pd.isna(fd) else f", FD {fd:.0f}"
        out[rec["dataset"]] = f"{rec['dataset']}{sep}({domain}{score})"
    return out


def figures(data: rdata.ReportData) -> dict[str, Any]:
    """Every static figure of the report, keyed by section (a list for the per-backbone accuracy figures)."""
    order = data.dataset_order
    titles = similarity_labels(data.datasets)
    backbones = [b for b in sorted(data.summary["backbone"].unique()) if b != NO_BACKBONE]
    backbones = backbones or [NO_BACKBONE]
    acc = [
        _figure(
            lambda b=b: rfig.accuracy_vs_size(data.summary, order, b, titles),
            f"Backbone {b}: mean test accuracy over seeds against the training-set size (log scale), one line per "
            "strategy with its 95 % hierarchical-bootstrap interval; panels run from the dataset closest to natural "
            "photos (smallest Fréchet distance, FD) to the farthest. Backbone-independent baselines "
            "(scratch_small) appear in every backbone's figure; cells whose every seed was degenerate are not drawn.",
        )
        for b in backbones
    ]
    return {
        "accuracy": acc,
        "strategy_map": _figure(
            lambda: rfig.strategy_map(data.best, similarity_labels(data.datasets, newline=False), order),
            "Winning strategy (any backbone) per dataset and training-set size; the number under each abbreviation "
            "is the margin over the runner-up in accuracy points (— where only one cell was run); grey: no "
            "non-degenerate result at that size.",
        ),
        "gain": _figure(
            lambda: rfig.gain_over_scratch(data.gains, order, titles),
            "Gain in test accuracy of each pretrained strategy over the best from-scratch baseline at the same "
            "dataset and size (0 = no gain), with 95 % intervals; red crosses mark significant negative transfer.",
        ),
        "gain_similarity": _figure(
            lambda: rfig.gain_vs_similarity(_gap_gain_cells(data), rdata.SIMILARITY_SCORE, _correlation(data)),
            f"The domain-similarity axis, measured: the best transfer gain of each dataset and size against the "
            f"dataset's Fréchet distance to natural photos ({data.reference_backbone} features); marker shape is the "
            "domain label, colour the training-set size, vertical lines the 95 % intervals.",
        ),
        "cost": _figure(
            lambda: rfig.cost_vs_accuracy(data.runs, data.summary),
            "Each cell's accuracy minus the best accuracy at its dataset and size (0 = the winner) against four "
            "costs; the black step line is the Pareto front — no other cell is both cheaper and more accurate.",
        ),
        "backbones": _figure(
            lambda: rfig.backbone_transfer(data.backbones, data.backbone_correlations, order),
            "Does a better ImageNet model transfer better? Each pretrained strategy's mean test accuracy (95 % "
            "interval) per backbone, the backbones placed at their published ImageNet top-1; panel titles give the "
            "Spearman rank correlation ρ per strategy where at least three backbones were measured.",
        ),
        "curves": _figure(
            lambda: rfig.learning_curves(data.runs, order),
            "Training and validation accuracy and loss per epoch for one typical cell per strategy (largest N); "
            "the dotted line marks where fine-tuning starts after the head phase.",
        ),
    }


def _gap_gain_cells(data: rdata.ReportData) -> pd.DataFrame:
    """The cells of the gap-vs-gain figure, scored with the backbone that orders the datasets."""
    if data.reference_backbone is None:
        return data.gains.iloc[0:0]
    return analysis.gap_vs_gain_cells(data.gains, data.similarity, data.reference_backbone)


def _correlation(data: rdata.ReportData) -> dict[str, Any] | None:
    """The gap-vs-gain correlation for the backbone whose scores order the datasets."""
    return next((c for c in data.similarity_vs_gain if c["backbone"] == data.reference_backbone), None)


def backbones_section(data: rdata.ReportData) -> dict[str, Any]:
    """The Backbones section's tables (``study.analysis.backbones``, formatted only)."""
    corr = data.backbone_correlations
    group = ["dataset", "n_images", "image_size", "strategy"]
    shown = corr[[*group, "n_backbones", "rho", "rho_ci_low", "rho_ci_high", "p", "ci_method", "note"]] if len(
        corr) else corr  # fmt: skip
    means = data.backbone_mean_correlations
    return {
        "min_backbones": bb_analysis.MIN_BACKBONES,
        "measured": int(corr["rho"].notna().sum()) if len(corr) else 0,
        "groups": len(corr),
        "correlations": table(
            shown,
            "backbone-correlations",
            "Spearman ρ between ImageNet top-1 and transfer accuracy per dataset × size × strategy, with its 95 % "
            "bootstrap interval (seeds and test examples resampled) and exact permutation p-value",
            key=lambda r: "|".join(str(r[k]) for k in group),
            digits={"rho": 2, "rho_ci_low": 2, "rho_ci_high": 2, "p": 3},
        ),
        "means": table(
            means,
            "backbone-mean-correlations",
            "Mean per-dataset ρ per strategy and size, with a 95 % interval resampling the datasets",
            key=lambda r: f"{r['n_images']}|{r['image_size']}|{r['strategy']}",
            digits={"mean_rho": 2, "ci_low": 2, "ci_high": 2},
        ),
        "table": table(
            data.backbones,
            "backbones",
            "Transfer accuracy per backbone (mean over seeds, 95 % interval) beside its published ImageNet top-1 "
            "(%) and its cost: total parameters of the trained model and CPU latency per image (ms)",
            key=lambda r: "|".join(str(r[k]) for k in (*group, "backbone")),
            digits={"imagenet_top1": 1, "total_params": 0, "latency_ms": 2},
        ),
    }


def advisor_section(runs: pd.DataFrame, sims: pd.DataFrame) -> dict[str, Any]:
    """The advisor's rules and its leave-one-dataset-out regret, or why they are unavailable (never fatal)."""
    try:
        from advisor.evaluate import leave_one_dataset_out
        from advisor.model import Advisor
    except Exception as exc:  # noqa: BLE001 - any import problem means "not available", said in the report
        return {"available": False, "reason": f"the advisor package cannot be imported ({type(exc).__name__}: {exc})"}
    try:
        rules = str(Advisor().fit(runs, sims).rules_text())
        regret = leave_one_dataset_out(runs, sims)
        if not isinstance(regret, pd.DataFrame):
            regret = pd.DataFrame(regret)
    except Exception as exc:  # noqa: BLE001 - the advisor's failure must not cost the report
        return {"available": False, "reason": f"the advisor failed on these results ({type(exc).__name__}: {exc})"}
    return {
        "available": True,
        "rules": rules,
        "regret": table(
            regret.reset_index(drop=regret.index.name is None),
            "advisor-regret",
            "Leave-one-dataset-out regret of the advisor and of the textbook rule",
        ),
    }


def _verdict_class(rec: Mapping[str, Any]) -> str:
    return {"MiniLM better": "gain", "TF-IDF better": "negative"}.get(str(rec.get("verdict")), "")


def text_section(data: rdata.ReportData) -> dict[str, Any] | None:
    """The Text classification section, or None when no row is a text cell (the template then shows nothing)."""
    text = rtext.gather_text(data)
    if text is None:
        return None
    return {
        "datasets": text.datasets,
        "findings": rtext.text_findings(text),
        "figure": _figure(
            lambda: rfig.text_accuracy_vs_size(text.summary, text.datasets),
            "Text classification: mean test accuracy over seeds against the number of training texts (log scale), "
            "one panel per text dataset, one line per text strategy with its 95 % hierarchical-bootstrap interval; "
            "cells whose every seed was degenerate are not drawn.",
        ),
        "best": table(
            text.best,
            "text-best",
            "Best text strategy per dataset × N × token budget (mean test accuracy over seeds, 95 % interval)",
            key=lambda r: f"{r['dataset']}|{r['n_images']}|{r['image_size']}",
        ),
        "vs_tfidf": table(
            text.vs_tfidf,
            "text-vs-tfidf",
            "MiniLM (frozen: linear probe, feature extraction; fine-tuned: top layers, everything) minus TF-IDF + "
            "logistic regression at the same dataset and N, with the 95 % interval of the difference",
            key=lambda r: f"{r['dataset']}|{r['n_images']}|{r['image_size']}|{r['strategy']}",
            row_class=_verdict_class,
        ),
        "negative": table(
            text.negative[[c for c in NEGATIVE_COLUMNS if c in text.negative.columns]],
            "text-negative-transfer",
            "Text cells with significant negative transfer (MiniLM below the best from-scratch text baseline)",
            key=gain_key,
            row_class=lambda r: "negative",
        ),
    }


def _deploy_record(metrics: Any) -> dict[str, Any] | None:
    """``metrics["deploy"]`` of one row (``study.train.deploy.deployment_metrics``), or None."""
    if isinstance(metrics, str):
        try:
            metrics = json.loads(metrics)
        except ValueError:
            return None
    deploy = metrics.get("deploy") if isinstance(metrics, Mapping) else None
    return deploy if isinstance(deploy, Mapping) and deploy else None


def deployment_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """Per backbone × strategy × image size (means over the rows with deployment figures, e.g. ``--grid deploy``):
    parameters, Keras size and latency, each TFLite variant's size, latency and accuracy, the int8 accuracy delta.
    """
    rows = []
    for rec in runs.to_dict("records"):
        deploy = _deploy_record(rec.get("metrics"))
        if deploy is None:
            continue
        keras = deploy.get("keras") or {}
        row = {"backbone": rec.get("backbone"), "strategy": rec.get("strategy"), "image_size": rec.get("image_size"),
               "params": rec.get("total_params"), "keras MB": keras.get("mb"), "keras ms": keras.get("latency_ms"),
               "keras accuracy": keras.get("accuracy")}  # fmt: skip
        failed = []
        for v in VARIANTS:
            r = deploy.get(f"tflite_{v}") or {}
            if "error" in r:
                failed.append(v)
            row.update({f"{v} MB": r.get("mb"), f"{v} ms": r.get("latency_ms"), f"{v} accuracy": r.get("accuracy")})
        delta = deploy.get("int8_accuracy_delta")
        row["int8 Δ accuracy (points)"] = None if delta is None else 100 * float(delta)
        row["failed conversions"] = ", ".join(failed)
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    keys = ["backbone", "strategy", "image_size"]
    numeric = [c for c in frame.columns if c not in (*keys, "failed conversions")]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce")
    grouped = frame.groupby(keys, sort=True, dropna=False)
    out = grouped[numeric].mean().reset_index()
    out.insert(3, "rows", grouped.size().to_numpy())
    failed = grouped["failed conversions"].agg(lambda x: ", ".join(sorted({v for c in x if c for v in c.split(", ")})))
    out["failed conversions"] = failed.to_numpy()
    return out


def deployment_section(runs: pd.DataFrame) -> dict[str, Any]:
    """The cost section's Deployment table, or ``None`` when no row has deployment figures (the template notes it)."""
    frame = deployment_frame(runs)
    if frame.empty:
        return {"table": None}
    digits = {c: 2 for c in frame.columns if c.endswith((" MB", " ms"))} | {"int8 Δ accuracy (points)": 1}
    return {
        "table": table(
            frame,
            "deployment",
            "Deployment per backbone × strategy: parameters, the Keras model (.keras file MB, CPU ms per image, test "
            "accuracy) and its TFLite float32 / float16 / int8 exports (MB, ms, accuracy; int8 takes float input)",
            key=lambda r: f"{r['backbone']}|{r['strategy']}|{r['image_size']}",
            digits={**digits, "params": 0, "rows": 0},
        )
    }


def adaptation_key(rec: Mapping[str, Any]) -> str:
    """Identity of a domain-adaptation table row (what the tests compare with ``domain_adaptation_table``)."""
    return "|".join(str(rec[k]) for k in da_analysis.KEYS)


def _interval_text(mean: Any, low: Any, high: Any) -> str:
    return "-" if pd.isna(mean) else f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def adaptation_section(data: rdata.ReportData, anchors: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The domain-adaptation section (#20), or ``None`` when the runs hold no pair cells (no section at all).

    Its table is ``study.analysis.adaptation.domain_adaptation_table`` as gathered, formatted only: each recipe's
    cell reads ``mean [95 % interval]`` and sorts by the mean. The anchors shown are those of pair cells on the
    run's targets (``rdata.pair_anchor_rows``), with their protocol differences.
    """
    pairs = data.adaptation
    if pairs.empty:
        return None
    recipes = list(da_analysis.RECIPES)
    shown = pd.DataFrame({
        "source → target": [f"{s} → {t}" for s, t in zip(pairs["source"], pairs["dataset"], strict=True)],
        "N_t": pairs["n_target_labels"].astype(int), "source images": pairs["n_images"].astype(int),
        "px": pairs["image_size"].astype(int), "network": pairs["network"],
        **{r: pairs[r] for r in recipes}, "dann − source_only": pairs["dann_minus_source_only"],
    })  # fmt: skip
    keys = [adaptation_key(r) for r in pairs.to_dict("records")]
    formatted = table(shown, "domain-adaptation", "Target test accuracy per source → target pair, N_t (labelled "
                      "target images) and network: mean over seeds [95 % hierarchical-bootstrap interval]; - where "
                      "the recipe was not run (target_only and source_then_target need N_t > 0)")  # fmt: skip
    for row, key, rec in zip(formatted["rows"], keys, pairs.to_dict("records"), strict=True):
        row["key"] = key
        for i, r in enumerate(recipes, start=5):
            row["cells"][i]["text"] = _interval_text(rec[r], rec[f"{r}_ci_low"], rec[f"{r}_ci_high"])
    return {
        "table": formatted,
        "findings": da_analysis.findings(pairs),
        "figure": _figure(
            lambda: rfig.domain_adaptation(pairs),
            "Target test accuracy of each recipe per source → target pair (one panel per pair, network, image "
            "size and source count), one colour per number of labelled target images N_t, with the table's 95 % "
            "intervals. source_only and dann at N_t = 0 use no target label; dann at N_t > 0 adds the labelled "
            "target images to its label loss.",
        ),
        "anchors": rdata.pair_anchor_rows(list(anchors), set(pairs["dataset"])),
    }


def anchor_groups(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Anchors grouped by source: each source's quotes, protocols, differences and findings are stated once."""
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        g = groups.setdefault(row["source"], {"source": row["source"], "url": row["url"], "quotes": [], "rows": [],
                                              "protocols": {}, "differences": {}, "findings": []})  # fmt: skip
        if row.get("quote") and row["quote"] not in g["quotes"]:
            g["quotes"].append(row["quote"])
        if row.get("finding") and row["finding"] not in g["findings"]:
            g["findings"].append(row["finding"])
        name = row.get("name", row["id"])
        size = row.get("image_size")
        text = row.get("modality") == "text"  # a text anchor's size is its token budget, its examples texts
        unit = (" tokens" if text else " px") if isinstance(size, int) else ""
        protocol = (f"{row.get('model', name)}; {size}{unit}, "
                    f"{row.get('train_images', '?')} training {'texts' if text else 'images'}"
                    + (f", {row['epochs']} epochs" if row.get("epochs") is not None else "")
                    + f"; evaluated on the {row.get('evaluated_on', 'test set')}")  # fmt: skip
        g["protocols"].setdefault(name, protocol)
        g["differences"].setdefault(row["protocol_differences"], [])
        if name not in g["differences"][row["protocol_differences"]]:
            g["differences"][row["protocol_differences"]].append(name)
        g["rows"].append(row)
    return [{**g, "protocols": list(g["protocols"].items()),
             "differences": [(", ".join(names), text) for text, names in g["differences"].items()]}
            for g in groups.values()]  # fmt: skip


def _git_state() -> str | None:
    """The code's commit (and whether it had local changes), so a committed report says what built it."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head} (with uncommitted changes)" if dirty else head


# ----------------------------------------------------------------------------------------------------------
# Assembly
# ----------------------------------------------------------------------------------------------------------


def context(data: rdata.ReportData, downloads: Mapping[str, Any], title: str | None = None) -> dict[str, Any]:
    """Everything the template shows; the template only formats it."""
    info = rdata.run_info(data)
    winners = rdata.domain_size_winners(data)
    gains_cols = NEGATIVE_COLUMNS
    neg = data.negative_transfer
    text = text_section(data)
    published = [a for a in rdata.load_anchors() if text is not None or a.get("modality") != "text"]  # text: if any
    anchors = rdata.anchor_rows(data, published)
    datasets = data.datasets.rename(columns={rdata.SIMILARITY_SCORE: "frechet_distance (lower = closer)"})
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    grids = ", ".join(info["grids"]) or "unknown grid"
    return {
        "title": title or f"transfer-study report — {grids}",
        "generated": generated,
        "git": _git_state(),
        "info": info,
        "duration": {"compute": duration(info["compute_seconds"]), "span": duration(info["span_seconds"])},
        "findings": rdata.key_findings(data, winners),
        "winners": table(winners, "domain-size-winners", "Best strategy per domain and training-set size"),
        "datasets": table(
            datasets,
            "datasets",
            "Datasets, from closest to farthest from natural photos",
            digits={"frechet_distance (lower = closer)": 1},
        ),
        "figures": figures(data),
        "best": table(
            data.best,
            "best-per-cell",
            "Winner per dataset × size × image size (all backbones)",
            key=best_key,
        ),
        "negative": table(
            neg[gains_cols],
            "negative-transfer",
            "Cells with significant negative transfer",
            key=gain_key,
            row_class=lambda r: "negative",
        ),
        "n_pretrained": int(data.gains["gain"].notna().sum()),
        "curves_json": json.dumps(rdata.curves_payload(data.runs), separators=(",", ":"), allow_nan=False),
        "backbones": backbones_section(data),
        "advisor": advisor_section(data.runs, data.similarity),
        "deployment": deployment_section(data.runs),
        "text": text,
        "anchors": anchors,
        "anchor_groups": anchor_groups(anchors),
        "adaptation": adaptation_section(data, anchors),
        "downloads": downloads,
        "summary": table(
            data.summary,
            "summary",
            "Every cell: seeds, degenerate rows, accuracy with 95 % interval",
            key=lambda r: "|".join(str(r[k]) for k in ("dataset", "n_images", "strategy", "backbone", "image_size")),
        ),
        "gains": table(
            data.gains,
            "gains",
            "Every pretrained cell against its best from-scratch baseline",
            key=gain_key,
            row_class=_negative_class,
        ),
        "runs": table(
            rdata.runs_table(data.runs),
            "runs",
            "Every complete row of the results store",
            key=lambda r: str(r.get("cell_key", "")),
            digits={"latency_ms": 2, "model_mb": 2},
        ),
    }

