"""``python -m reports.build``: render the results store as one self-contained HTML report.

The report (default ``reports/report.html``) embeds its figures as PNG data URIs and its scripts inline, so it
opens offline from any folder; the exported tables (``runs.csv`` / ``runs.parquet``) are written beside it and
linked relatively. It only reads the store: a failed report never touches a result. ``study.run`` calls
``build_report(store)`` at the end of a sweep.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from reports import data as rdata
from reports import figures as rfig
from study.analysis import backbones as bb_analysis
from study.analysis import tables as analysis
from study.cli_support import add_verbose_flag, quiet_tensorflow
from study.engine.store import NO_BACKBONE
from study.errors import StudyError
from study.train.deploy import VARIANTS

DEFAULT_OUT = Path("reports") / "report.html"
TEMPLATES = Path(__file__).with_name("templates")
REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------------
# Tables as template data: every cell has display text and, for numbers, a raw value to sort by
# ----------------------------------------------------------------------------------------------------------


def _cell(value: Any, digits: int = 3) -> dict[str, Any]:
    if value is None or (np.ndim(value) == 0 and not isinstance(value, str) and pd.isna(value)):
        return {"text": "", "sort": None, "num": False}
    if isinstance(value, bool | np.bool_):
        return {"text": "yes" if value else "no", "sort": None, "num": False}
    if isinstance(value, int | np.integer):
        return {"text": str(int(value)), "sort": int(value), "num": True}
    if isinstance(value, float | np.floating):
        f = float(value)
        if not math.isfinite(f):
            return {"text": str(f), "sort": None, "num": False}
        text = f"{f:.{digits}f}" if abs(f) < 1e5 or digits == 0 else f"{f:.4g}"
        return {"text": text, "sort": f, "num": True}
    if isinstance(value, pd.Timestamp | dt.datetime):
        return {"text": value.strftime("%Y-%m-%d %H:%M:%S"), "sort": None, "num": False}
    if isinstance(value, Mapping | list | tuple):
        return {"text": json.dumps(value, sort_keys=True, default=str), "sort": None, "num": False}
    return {"text": str(value), "sort": None, "num": False}


_FRACTIONS = ("accuracy", "gain", "share", "auc", "margin", "ci_", "f1", "loss", "similarity", "distance")


def table(
    frame: pd.DataFrame,
    table_id: str,
    caption: str,
    key: Callable[[Mapping[str, Any]], str] | None = None,
    row_class: Callable[[Mapping[str, Any]], str] | None = None,
    digits: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A frame as a sortable table: columns, and rows of cells with display text and sort values."""
    digits = dict(digits or {})
    for col in frame.columns:  # counts stored as floats (e.g. after a merge) read better as integers
        if col in digits or frame[col].dtype.kind != "f" or any(w in str(col) for w in _FRACTIONS):
            continue
        values = frame[col].dropna()
        if len(values) and (values % 1 == 0).all():
            digits[col] = 0
    rows = []
    for rec in frame.to_dict("records"):
        rows.append({
            "key": key(rec) if key else "",
            "cls": row_class(rec) if row_class else "",
            "cells": [_cell(rec[c], digits.get(c, 3)) for c in frame.columns],
        })  # fmt: skip
    return {"id": table_id, "caption": caption, "columns": [str(c) for c in frame.columns], "rows": rows}


def gain_key(rec: Mapping[str, Any]) -> str:
    """Identity of a pretrained cell in the gain tables (what the tests compare with ``transfer_gain``)."""
    return "|".join(str(rec[k]) for k in ("dataset", "n_images", "backbone", "image_size", "strategy"))


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
        protocol = (f"{row.get('model', name)}; {size}{' px' if isinstance(size, int) else ''}, "
                    f"{row.get('train_images', '?')} training images"
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


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    minutes = seconds / 60
    return f"{seconds:.0f} s" if seconds < 120 else (f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h")


# ----------------------------------------------------------------------------------------------------------
# Downloads
# ----------------------------------------------------------------------------------------------------------


def _write_frame(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """JSON columns as JSON text (like ``study.analysis.export``), written beside the target and renamed over it."""
    frame = frame.copy()
    for col in frame.columns:
        if frame[col].map(lambda v: isinstance(v, Mapping | list)).any():
            frame[col] = frame[col].map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, Mapping | list) else v)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        frame.to_parquet(tmp, index=False) if fmt == "parquet" else frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def export_tables(store_or_frame: Any, export_dir: Path, report_dir: Path) -> dict[str, Any]:
    """Write runs/datasets as CSV and Parquet into ``export_dir``; links are relative to the report's folder."""
    links = []
    try:
        export_dir.mkdir(parents=True, exist_ok=True)
        for fmt in ("csv", "parquet"):
            if isinstance(store_or_frame, pd.DataFrame):
                path = export_dir / f"runs.{fmt}"
                _write_frame(store_or_frame, path, fmt)
                written = {"runs": (path, len(store_or_frame))}
            else:
                from study.analysis.export import export

                written = export(store_or_frame, export_dir, fmt)  # type: ignore[arg-type]
            for name, (path, n) in written.items():
                href = Path(os.path.relpath(Path(path).resolve(), report_dir.resolve())).as_posix()
                links.append({"table": name, "format": fmt.upper() if fmt == "csv" else "Parquet", "href": href,
                              "rows": n})  # fmt: skip
    except (StudyError, OSError, ValueError, ImportError) as exc:
        return {"links": links, "error": f"the tables could not be exported to {export_dir}: {exc}"}
    return {"links": links, "error": ""}


# ----------------------------------------------------------------------------------------------------------
# Assembly
# ----------------------------------------------------------------------------------------------------------


def context(data: rdata.ReportData, downloads: Mapping[str, Any], title: str | None = None) -> dict[str, Any]:
    """Everything the template shows; the template only formats it."""
    info = rdata.run_info(data)
    winners = rdata.domain_size_winners(data)
    gains_cols = ["dataset", "n_images", "strategy", "backbone", "image_size", "accuracy", "baseline_strategy",
                  "baseline_backbone", "baseline_accuracy", "gain", "gain_ci_low", "gain_ci_high", "n_seeds",
                  "baseline_n_seeds"]  # fmt: skip
    neg = data.negative_transfer
    anchors = rdata.anchor_rows(data, rdata.load_anchors())
    datasets = data.datasets.rename(columns={rdata.SIMILARITY_SCORE: "frechet_distance (lower = closer)"})
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    grids = ", ".join(info["grids"]) or "unknown grid"
    return {
        "title": title or f"transfer-study report — {grids}",
        "generated": generated,
        "git": _git_state(),
        "info": info,
        "duration": {"compute": _duration(info["compute_seconds"]), "span": _duration(info["span_seconds"])},
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
            key=lambda r: f"{r['dataset']}|{r['n_images']}|{r['image_size']}",
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
        "anchors": anchors,
        "anchor_groups": anchor_groups(anchors),
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


def render(ctx: Mapping[str, Any]) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    env.filters["jsonscript"] = lambda s: s.replace("</", "<\\/")
    return env.get_template("report.html.j2").render(**ctx)


def write_atomic(path: Path, text: str) -> None:
    """Write beside the target and rename over it, so a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def build_report(
    store_or_frame: Any, out: Path | None = None, title: str | None = None, export_dir: Path | None = None
) -> Path:
    """Render the report of a results store (or a frame of its rows) to ``out``; returns the path written.

    ``out`` defaults to ``reports/report.html`` under the current directory and ``export_dir`` to ``export/``
    beside it (the report links there relatively). Raises ``StudyError`` when there is nothing to report.
    """
    out = Path(out) if out is not None else DEFAULT_OUT
    export_dir = Path(export_dir) if export_dir is not None else out.parent / "export"
    data = rdata.gather(store_or_frame)
    out.parent.mkdir(parents=True, exist_ok=True)
    downloads = export_tables(store_or_frame, export_dir, out.parent)
    write_atomic(out, render(context(data, downloads, title)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; a StudyError (e.g. an empty store) is one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(prog="python -m reports.build", description=__doc__.splitlines()[0])
    parser.add_argument("--store", metavar="URL", help="results store URL (default: sqlite:///results/study.db)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report file (default: {DEFAULT_OUT})")
    parser.add_argument("--export-dir", type=Path, help="folder for runs.csv/runs.parquet (default: export/ beside)")
    parser.add_argument("--title", help="report title (default: names the grid)")
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    try:
        from study.engine.store import ResultsStore, default_url

        with ResultsStore(args.store or default_url(), create=False) as store:
            path = build_report(store, args.out, args.title, args.export_dir)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write the report to {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
