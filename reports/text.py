"""The report's text section (issue 23): what text cells show, gathered from the same tables as the rest.

Why a module of its own: text cells answer the same question with other options (TF-IDF, a text CNN, MiniLM frozen
or fine-tuned), and a reader asks of them first "does the pretrained encoder beat TF-IDF + logistic regression?",
which the report's gain over the *best* baseline does not say. Which rows are text is read from the strategy records
(``Strategy.modality``), never from dataset names, so an image-only store gets no text section at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from reports.data import ReportData
from study.analysis import stats
from study.train.strategies import is_text_strategy, strategy_or_none

TFIDF = "text_tfidf_logreg"
"""The classical baseline every MiniLM strategy is compared with (the one practitioners would otherwise use)."""

FROZEN_LEVEL = 3
"""``Strategy.freeze_level`` of a strategy that keeps the whole encoder frozen (linear probe, feature extraction)."""

GAIN_COLUMNS = ["dataset", "n_images", "image_size", "strategy", "encoder", "accuracy", "tfidf_accuracy", "gain",
                "gain_ci_low", "gain_ci_high", "n_seeds", "tfidf_n_seeds", "verdict"]  # fmt: skip


@dataclass
class TextData:
    """The text section's frames: which datasets, their winners, MiniLM vs TF-IDF and the negative transfer."""

    datasets: list[str]
    best: pd.DataFrame
    vs_tfidf: pd.DataFrame
    negative: pd.DataFrame
    summary: pd.DataFrame


def text_datasets(runs: pd.DataFrame) -> list[str]:
    """Datasets with at least one text-strategy row, sorted."""
    if runs.empty:
        return []
    return sorted({str(d) for d in runs.loc[runs["strategy"].map(is_text_strategy).astype(bool), "dataset"]})


def encoder_vs_tfidf(runs: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Each pretrained text strategy minus TF-IDF + logistic regression at the same dataset, N and token budget.

    Degenerate rows are excluded on both sides (as in ``stats.transfer_gain``); the interval is ``stats.row_difference``
    (paired over test examples). ``verdict``: "MiniLM better" / "TF-IDF better" when the 95 % interval excludes 0,
    else "no significant difference"; a cell without a usable TF-IDF row is left out.
    """
    marked = stats.mark_degenerate(runs[runs["strategy"].map(is_text_strategy).astype(bool)])
    good = marked[~marked["degenerate"]]
    records = []
    for (dataset, n, size), rows in good.groupby(["dataset", "n_images", "image_size"], sort=True):
        base = rows[rows["strategy"] == TFIDF]
        if base.empty:
            continue
        for strategy, cell in rows.groupby("strategy", sort=False):
            record = strategy_or_none(str(strategy))
            if record is None or not record.pretrained:
                continue
            gain, low, high = stats.row_difference(cell, base, n_boot=n_boot)
            verdict = ("MiniLM better" if low > 0 else "TF-IDF better" if high < 0 else "no significant difference")
            records.append({"dataset": dataset, "n_images": int(n), "image_size": int(size), "strategy": strategy,
                            "encoder": "frozen" if record.freeze_level >= FROZEN_LEVEL else "fine-tuned",
                            "accuracy": float(cell["accuracy"].mean()),
                            "tfidf_accuracy": float(base["accuracy"].mean()),
                            "gain": gain, "gain_ci_low": low, "gain_ci_high": high, "n_seeds": len(cell),
                            "tfidf_n_seeds": len(base), "verdict": verdict})  # fmt: skip
    order = {r.name: r.order for r in (strategy_or_none(s) for s in good["strategy"].unique()) if r is not None}
    frame = pd.DataFrame.from_records(records, columns=GAIN_COLUMNS)
    if frame.empty:
        return frame
    frame["_o"] = frame["strategy"].map(order)
    return frame.sort_values(["dataset", "n_images", "image_size", "_o"]).drop(columns="_o").reset_index(drop=True)


def gather_text(data: ReportData, n_boot: int = 2000) -> TextData | None:
    """The text section's data, or None when the runs hold no text cell (an image-only report is unchanged)."""
    names = text_datasets(data.runs)
    if not names:
        return None
    best = data.best[data.best["dataset"].isin(names)].reset_index(drop=True)
    neg = data.negative_transfer
    neg = neg[neg["dataset"].isin(names) & neg["strategy"].map(is_text_strategy).astype(bool)].reset_index(drop=True)
    summary = data.summary
    summary = summary[summary["dataset"].isin(names) & summary["strategy"].map(is_text_strategy).astype(bool)]
    return TextData(datasets=names, best=best, vs_tfidf=encoder_vs_tfidf(data.runs, n_boot), negative=neg,
                    summary=summary.reset_index(drop=True))  # fmt: skip


def text_findings(text: TextData) -> list[str]:
    """Sentences written from the text tables: how often MiniLM beat TF-IDF, frozen and fine-tuned, and where not."""
    out = []
    vs = text.vs_tfidf
    for encoder in ("frozen", "fine-tuned"):
        part = vs[vs["encoder"] == encoder]
        if part.empty:
            continue
        better = int((part["verdict"] == "MiniLM better").sum())
        worse = part[part["verdict"] == "TF-IDF better"]
        line = (f"{encoder.capitalize()} MiniLM vs TF-IDF + logistic regression: significantly better in {better} of "
                f"{len(part)} strategy × dataset × N cells, significantly worse in {len(worse)}")  # fmt: skip
        if len(worse):
            where = ", ".join(f"{r.strategy} on {r.dataset} at N={r.n_images}" for r in worse.head(4).itertuples())
            line += f" ({where}"
            line += f"{' and more' if len(worse) > 4 else ''})"
        out.append(line + ".")
    if not vs.empty:
        top = vs.sort_values("gain", ascending=False).iloc[0]
        out.append(f"Largest gain over TF-IDF: {top['strategy']} on {top['dataset']} at N={top['n_images']}, "
                   f"{top['gain']:+.3f} [{top['gain_ci_low']:+.3f}, {top['gain_ci_high']:+.3f}].")  # fmt: skip
    return out
