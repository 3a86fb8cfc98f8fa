"""``advisor recommend --data-dir`` on text: measure a labelled text collection and rank the study's text strategies.

Input: a CSV file with ``text`` and ``label`` columns (``tickets.csv``), or a folder with one sub-folder per class
holding ``.txt`` files (one text per file). Traits measured: the number of texts, of classes, the largest class's
share. Ranking: every text strategy (``modality == "text"`` records) by its mean accuracy over the study's text
datasets, each dataset read at its measured training-set size nearest to the user's (log scale), degenerate runs
excluded. This is the basic text path: no domain gap or probe scores yet, and the image advisor's fitted model is
not used (its traits are image traits).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advisor.data import AdvisorError, load_results
from study.errors import StudyError
from study.train.strategies import strategy_or_none

TEXT_SUFFIX = ".txt"


def is_text_input(path: str | Path) -> bool:
    """A ``.csv`` file, or a folder whose class sub-folders hold ``.txt`` files: the text path of ``recommend``."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return True
    return p.is_dir() and any(f.suffix.lower() == TEXT_SUFFIX for d in p.iterdir() if d.is_dir() for f in d.iterdir())


def read_texts(path: str | Path) -> tuple[list[str], list[str]]:
    """(texts, labels) of a ``text,label`` CSV or a folder of class sub-folders of ``.txt`` files; bad input is a
    one-line ``AdvisorError``."""
    from study.data.text import read_csv

    p = Path(path)
    if not p.exists():
        raise AdvisorError(f"{p} does not exist; pass a CSV file with text,label columns or a folder of class folders")
    if p.is_file():
        try:
            texts, labels = read_csv(p, p.stem)
        except StudyError as error:
            raise AdvisorError(str(error)) from None
        except UnicodeDecodeError:
            raise AdvisorError(f"{p} is not UTF-8 text; save it as UTF-8 CSV with text,label columns") from None
    else:
        texts, labels = [], []
        for folder in sorted(d for d in p.iterdir() if d.is_dir()):
            for f in sorted(folder.glob(f"*{TEXT_SUFFIX}")):
                try:
                    text = f.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    raise AdvisorError(f"{f} is not UTF-8 text; save it as UTF-8") from None
                if not text.strip():
                    raise AdvisorError(f"{f} is empty; remove it or fill it in")
                texts.append(text)
                labels.append(folder.name)
    if not texts:
        raise AdvisorError(f"{p} holds no texts; a CSV needs rows under a text,label header, a folder needs "
                           f"class sub-folders of {TEXT_SUFFIX} files")  # fmt: skip
    if len(set(labels)) < 2:
        raise AdvisorError(f"{p} has one class ({labels[0]}); a classifier needs at least two labels")
    return texts, labels


def measure_texts(path: str | Path) -> dict[str, Any]:
    """The traits of a text collection: n_texts, n_classes, imbalance (the largest class's share)."""
    texts, labels = read_texts(path)
    _, counts = np.unique(labels, return_counts=True)
    return {"n_texts": len(texts), "n_classes": int(len(counts)), "imbalance": float(counts.max() / len(texts)),
            "median_characters": int(np.median([len(t) for t in texts]))}  # fmt: skip


def _is_text_strategy(name: str) -> bool:
    record = strategy_or_none(name)
    return record is not None and record.modality == "text"


def rank_text_strategies(runs: pd.DataFrame, n_texts: int) -> list[dict[str, Any]]:
    """Text strategies best first: mean accuracy over the text datasets at their measured size nearest ``n_texts``."""
    if runs.empty or "strategy" not in runs:
        text = runs
    else:
        text = runs[runs["strategy"].map(_is_text_strategy)]
        if "degenerate" in text:
            text = text[~text["degenerate"].fillna(False).astype(bool)]
        text = text.dropna(subset=["accuracy"])
    if text.empty:
        raise AdvisorError("the results hold no (non-degenerate) text runs to rank from: run the text grid "
                           "(python -m study.run --grid text --store URL) and pass --results URL")  # fmt: skip
    out = []
    for strategy, rows in text.groupby("strategy"):
        per_dataset = []
        for dataset, d in rows.groupby("dataset"):
            sizes = d["n_images"].astype(float)
            nearest = sizes.iloc[int(np.argmin(np.abs(np.log(sizes) - np.log(n_texts))))]
            at = d[sizes == nearest]
            per_dataset.append((dataset, int(nearest), float(at["accuracy"].mean()), len(at)))
        out.append({"strategy": str(strategy), "accuracy": float(np.mean([a for _, _, a, _ in per_dataset])),
                    "datasets": [{"dataset": ds, "n": n, "accuracy": a, "runs": k} for ds, n, a, k in per_dataset]})
    return sorted(out, key=lambda o: -o["accuracy"])


def recommend_text(data: str | Path, results: str | None, n_texts: int | None = None) -> tuple[dict, list[dict]]:
    """(measured traits, ranked text strategies) for ``advisor recommend --data-dir`` on text."""
    measured = measure_texts(data)
    runs, _ = load_results(results)
    return measured, rank_text_strategies(runs, n_texts or measured["n_texts"])


def format_text_recommendation(measured: dict[str, Any], ranked: list[dict[str, Any]], n_texts: int) -> str:
    lines = [f"Advice for {n_texts} labelled texts: {measured['n_classes']} classes, largest class "
             f"{measured['imbalance']:.0%}, median {measured['median_characters']} characters."]  # fmt: skip
    lines.append("Ranked by mean test accuracy over the study's text datasets at their nearest measured size:")
    lines.append("")
    width = max(len(o["strategy"]) for o in ranked) + 2
    lines.append(f" #  {'strategy':<{width}}accuracy  datasets (n)")
    for i, o in enumerate(ranked, 1):
        where = ", ".join(f"{d['dataset']} ({d['n']})" for d in o["datasets"])
        lines.append(f"{i:>2}  {o['strategy']:<{width}}{o['accuracy']:.3f}     {where}")
    best = strategy_or_none(ranked[0]["strategy"])
    if best is not None and best.recipe:
        lines += ["", f"Recipe for {best.name}: {best.recipe}"]
    return "\n".join(lines)


def print_text_recommendation(data: str | Path, results: str | None, n_texts: int | None, as_json: bool) -> int:
    """The text branch of ``advisor recommend``: prints the advice; bad input raises a one-line AdvisorError."""
    import json

    measured, ranked = recommend_text(data, results, n_texts)
    n = n_texts or measured["n_texts"]
    if as_json:
        print(json.dumps({"measured": measured, "n_texts": n, "options": ranked}, indent=2))
    else:
        print(format_text_recommendation(measured, ranked, n), file=sys.stdout)
    return 0
