"""``advisor recommend --data-dir`` on text: measure a labelled text collection and rank the study's text strategies.

Input: a CSV file with ``text`` and ``label`` columns (``tickets.csv``), or a folder with one sub-folder per class
holding ``.txt`` files (one text per file). Traits measured: the number of texts, of classes, the largest class's
share.

Measured on the texts themselves (``text_probes``), on the frozen MiniLM mean-pooled embeddings (128 tokens, the
text grid's budget) of the **training texts only**: the texts go through ``registered_texts``, the same temporary
text dataset ``advisor train`` trains on, and the fixed stratified 20 % it holds out for testing never enters a
probe:

- the probes of ``study.probes.scores.probe_scores`` (5-fold cross-validated linear probe with its fold spread, kNN,
  LogME), as for image folders; scores are cached beside the activations (keyed by content, encoder, token budget,
  rows, labels and seed) and the embeddings in the activation cache, so asking again costs file reads;
- the domain gap: ``study.probes.text_domain.text_gap``, the Fréchet distance of those embeddings to the
  general-English reference (AG News), shown beside the study's datasets' gaps (``results/text/similarity.csv``).

Ranking: every text strategy (``modality == "text"`` records), each of the study's text datasets read at its measured
training-set size nearest to the user's (log scale), degenerate runs excluded. Without probes an option's figure is
its mean accuracy over those datasets. With them, ``text_linear_probe``'s expected accuracy is the user's own
cross-validated linear probe, and every other strategy's is that probe plus its mean measured gain over
``text_linear_probe`` on the same datasets at the same sizes (both figures are shown). The image advisor's fitted
model is not used (its traits are image traits).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advisor.data import AdvisorError, load_results
from advisor.render import imbalance_note
from study.errors import StudyError
from study.train.strategies import is_text_strategy, strategy_or_none

TEXT_SUFFIX = ".txt"
PROBE_MAX_LENGTH = 128
"""Token budget of the probes: the text grid's, so the measured figures sit on the study's scale."""
TEXT_PROBES_VERSION = 2
"""Bump when the text probes change what they compute: cached scores of older versions are ignored."""
HELD_OUT = 0.2
"""The share of the texts ``advisor train`` holds out for testing (``register_text_csv``'s fixed split)."""
TEXT_RESULTS = Path(__file__).resolve().parents[1] / "results" / "text"
"""Where text advice comes from when ``--results`` is not given: the committed text grid (also restored into the
reference study)."""
SIMILARITY_TABLE = TEXT_RESULTS / "similarity.csv"
"""The study's text datasets' domain gaps (``python -m study.probes.text_domain``)."""


def text_results(results: str | None) -> str | None:
    """``--results``, or the committed text grid when it is not given and exists (else the advisor's default)."""
    if results is None and (TEXT_RESULTS / "runs.parquet").is_file():
        return str(TEXT_RESULTS)
    return results


def is_text_input(path: str | Path) -> bool:
    """A ``.csv`` file, or a folder whose class sub-folders hold more ``.txt`` files than images: the text path of
    ``recommend``. Counting both, not spotting one ``.txt``: a folder of image classes with a stray ``notes.txt`` or
    ``README.txt`` in a class folder is still an image folder."""
    from study.data.readers import IMAGE_EXTENSIONS

    p = Path(path)
    if p.suffix.lower() == ".csv":
        return True
    if not p.is_dir():
        return False
    suffixes = [f.suffix.lower() for d in p.iterdir() if d.is_dir() for f in d.iterdir() if f.is_file()]
    n_text = sum(s == TEXT_SUFFIX for s in suffixes)
    return n_text > 0 and n_text > sum(s in IMAGE_EXTENSIONS for s in suffixes)


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


def rank_text_strategies(runs: pd.DataFrame, n_texts: int) -> list[dict[str, Any]]:
    """Text strategies best first: mean accuracy over the text datasets at their measured size nearest ``n_texts``."""
    if runs.empty or "strategy" not in runs:
        text = runs
    else:
        text = runs[runs["strategy"].map(is_text_strategy)]
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


@contextmanager
def registered_texts(texts: list[str], labels: list[str], source: Path, max_length: int, seed: int = 0
                     ) -> Iterator[Any]:  # fmt: skip
    """The texts as a temporary study text dataset (a ``LoadedDataset``: ``pool`` = training texts, ``test`` = the
    fixed stratified ``HELD_OUT`` share, seed ``seed``): the one split both ``advisor train`` and the probes use.

    The CSV is written outside the user's folder and the dataset is unregistered on exit."""
    import csv

    from study import config
    from study.data import catalog as study_data
    from study.data.datasets import unregister_dataset
    from study.data.text import register_text_csv

    name = f"advisor_text_{hashlib.sha256(str(source).encode()).hexdigest()[:8]}"
    with tempfile.TemporaryDirectory(prefix="advisor-text-") as tmp:
        path = Path(tmp) / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows(zip(texts, labels, strict=True))
        try:
            register_text_csv(name, path, test_fraction=HELD_OUT, seed=seed)
            yield study_data.load(name, max_length, config.data_dirs(), config.cache_dir(), allow_download=False)
        except StudyError as error:
            raise AdvisorError(str(error)) from None
        finally:
            unregister_dataset(name)


def _cached(stored: Path, compute: Any) -> dict[str, Any]:
    """``compute()``'s JSON, read from ``stored`` when a previous call wrote it (timings then read 0)."""
    from study.cache.json_files import cache_json, cached_json

    hit = cached_json(stored)  # None when missing or unreadable: recompute and rewrite
    if isinstance(hit, dict):
        return {**hit, "probe_seconds": 0.0, "cached": True}
    out = compute()
    if out.get("gap_error"):
        return {**out, "cached": False}  # measure the gap again next time, once its reference is there
    cache_json(stored, out)
    return {**out, "cached": False}


def text_probes(path: str | Path, max_length: int = PROBE_MAX_LENGTH, seed: int = 0) -> dict[str, Any]:
    """Probe scores and domain gap of a text collection's training texts (never the held-out ``HELD_OUT``).

    Returns the ``PROBE_KEYS`` with ``n``, ``folds``, ``n_held_out``, the gap (``frechet_distance`` and its
    reference) and timings (``extract_seconds``: embedding, 0 when cached; ``probe_seconds``; ``gap_seconds``). Too
    few texts per class for the folds is a one-line ``AdvisorError``."""
    from study import config
    from study.cache.features import FeatureEngine
    from study.data import catalog as study_data
    from study.probes import text_domain
    from study.probes.scores import probe_scores
    from study.train.text_strategies import PROBE_C_GRID

    src = Path(path).expanduser().resolve()
    texts, labels = read_texts(src)
    engine = FeatureEngine(config.cache_dir(), config.weights_dirs())
    with registered_texts(texts, labels, src, max_length, seed) as ds:
        rows = np.arange(len(ds.pool))
        names = np.asarray(ds.class_names, dtype=object)[ds.pool.labels[rows]]
        t0 = time.perf_counter()
        F = text_domain.text_embeddings(ds, "pool", rows, engine, max_length)
        extract = time.perf_counter() - t0
        key = hashlib.sha256(json.dumps([TEXT_PROBES_VERSION, ds.source_checksum, text_domain.ENCODER,
                                         max_length, seed]).encode())  # fmt: skip
        for part in (rows, names, ds.pool.groups):
            key.update(np.ascontiguousarray(np.asarray(part).astype(str)).tobytes() + b"|")

        def compute() -> dict[str, Any]:
            t1 = time.perf_counter()
            try:
                scores = probe_scores(F, names, ds.pool.groups, seed=seed, c_grid=PROBE_C_GRID, repeats=1)
            except StudyError as error:
                message = str(error).replace("training image", "training text").replace("images", "texts")
                raise AdvisorError(f"{src}: {message} (after the {HELD_OUT:.0%} that advisor train holds out); "
                                   "add texts to that class or drop it") from None  # fmt: skip
            scores.pop("seconds")
            t2 = time.perf_counter()

            def load(name: str, size: int) -> Any:
                return study_data.load(name, size, config.data_dirs(), config.cache_dir(), allow_download=False)

            try:
                reference = text_domain.reference_embeddings(engine, load, max_length)
                gap = text_domain.text_gap(F, reference)
                gap["floor_at_n"] = text_domain.floor_at(len(F), reference, engine, load, max_length)
            except StudyError as error:  # the reference data missing: probes still shown
                gap = {"frechet_distance": None, "gap_error": str(error).splitlines()[0]}
            gap.pop("n", None)
            return {**scores, **gap, "probe_seconds": t2 - t1, "gap_seconds": time.perf_counter() - t2}

        out = _cached(Path(engine.cache.root).parent / "probes" / f"text-{key.hexdigest()[:32]}.json", compute)
    return {**out, "n_held_out": len(ds.test), "max_length": max_length, "extract_seconds": extract}


def study_gaps(table: Path = SIMILARITY_TABLE) -> list[dict[str, Any]]:
    """The study's text datasets' domain gaps, closest first (empty when the table is missing)."""
    if not table.is_file():
        return []
    frame = pd.read_csv(table).sort_values("frechet_distance")
    return [{"dataset": r.dataset, "frechet_distance": float(r.frechet_distance), "n": int(r.n)}
            for r in frame.itertuples()]  # fmt: skip


def with_probe(ranked: list[dict[str, Any]], runs: pd.DataFrame, probe: float) -> list[dict[str, Any]]:
    """The options re-ranked on the user's linear probe: ``text_linear_probe`` expects ``probe``; every other
    strategy ``probe`` + its mean gain over ``text_linear_probe`` on each dataset at the size it was read at."""
    ok = runs[~runs.get("degenerate", pd.Series(False, index=runs.index)).fillna(False).astype(bool)]
    lp = ok[ok["strategy"] == "text_linear_probe"].dropna(subset=["accuracy"])
    lp_at = lp.groupby(["dataset", "n_images"])["accuracy"].mean().to_dict()
    out = []
    for o in ranked:
        gains = [d["accuracy"] - lp_at[(d["dataset"], d["n"])] for d in o["datasets"]
                 if (d["dataset"], d["n"]) in lp_at]  # fmt: skip
        if o["strategy"] == "text_linear_probe":
            gains = [0.0]
        expected = probe + float(np.mean(gains)) if gains else None
        out.append({**o, "study_accuracy": o["accuracy"], "gain_over_probe": float(np.mean(gains)) if gains else None,
                    "accuracy": expected, "datasets_paired": len(gains)})  # fmt: skip
    return sorted(out, key=lambda o: -(o["accuracy"] if o["accuracy"] is not None else -1.0))


def recommend_text(data: str | Path, results: str | None, n_texts: int | None = None, *, probes: bool = True,
                   max_length: int = PROBE_MAX_LENGTH) -> tuple[dict, list[dict]]:  # fmt: skip
    """(measured traits, ranked text strategies) for ``advisor recommend --data-dir`` on text; the traits carry
    ``probes`` (``text_probes``) and ``study_gaps`` unless ``probes`` is False."""
    measured = measure_texts(data)
    runs, _ = load_results(text_results(results))  # the committed text grid when --results is not given
    ranked = rank_text_strategies(runs, n_texts or measured["n_texts"])
    if probes:
        measured["probes"] = text_probes(data, max_length)
        measured["study_gaps"] = study_gaps()
        ranked = with_probe(ranked, runs, measured["probes"]["linear_probe_accuracy"])
    return measured, ranked


def _probe_lines(p: dict[str, Any], gaps: list[dict[str, Any]]) -> list[str]:
    how = "read from the cache" if p.get("cached") else f"{p['probe_seconds']:.1f} s"
    lines = [f"Measured on the {p['n']} training texts (frozen MiniLM, {p['max_length']} tokens; the {p['n_held_out']} "
             f"texts advisor train holds out are not used), embedding {p['extract_seconds']:.1f} s:",
             f"  linear probe {p['linear_probe_accuracy']:.3f} (+/- {p['linear_probe_std']:.3f} over {p['folds']} "
             f"folds), kNN {p['knn_accuracy']:.3f}, LogME {p['logme']:.3f} (probes {how})"]  # fmt: skip
    if p.get("frechet_distance") is not None:
        near = ", ".join(f"{g['dataset']} {g['frechet_distance']:.3f}" for g in gaps)
        lines.append(f"  domain gap (Fréchet distance to general English, {p['reference']}, {p['reference_n']} texts): "
                     f"{p['frechet_distance']:.3f}" + (f"; the study's datasets ({gaps[0]['n']} texts each): {near}"
                                                       if gaps else ""))  # fmt: skip
        lines.append(f"  (lower = closer; a sample reads higher the fewer texts it has: {p['n']} general-English "
                     f"texts read {p['floor_at_n']:.3f})")
    elif p.get("gap_error"):
        lines.append(f"  domain gap not measured: {p['gap_error']}")
    return lines


def format_text_recommendation(measured: dict[str, Any], ranked: list[dict[str, Any]], n_texts: int) -> str:
    lines = [f"Advice for {n_texts} labelled texts: {measured['n_classes']} classes, largest class "
             f"{measured['imbalance']:.0%}, median {measured['median_characters']} characters."]  # fmt: skip
    note = imbalance_note(measured, "labelled texts")
    if note:
        lines.append(f"  {note}")
    probed = "probes" in measured
    if probed:
        lines += _probe_lines(measured["probes"], measured.get("study_gaps", []))
        lines.append("Ranked by expected accuracy: your linear probe for text_linear_probe, your probe + the study's "
                     "mean gain over it for the others (datasets at their nearest measured size):")  # fmt: skip
    else:
        lines.append("Ranked by mean test accuracy over the study's text datasets at their nearest measured size:")
    lines.append("")
    width = max(len(o["strategy"]) for o in ranked) + 2
    lines.append(f" #  {'strategy':<{width}}{'expected  study' if probed else 'accuracy'}  datasets (n)")
    for i, o in enumerate(ranked, 1):
        where = ", ".join(f"{d['dataset']} ({d['n']})" for d in o["datasets"])
        acc = "   -  " if o["accuracy"] is None else f"{o['accuracy']:.3f}"
        figure = f"{acc}     {o['study_accuracy']:.3f}" if probed else acc
        lines.append(f"{i:>2}  {o['strategy']:<{width}}{figure}     {where}")
    best = strategy_or_none(ranked[0]["strategy"])
    if best is not None and best.recipe:
        lines += ["", f"Recipe for {best.name}: {best.recipe}"]
    return "\n".join(lines)


def print_text_recommendation(data: str | Path, results: str | None, n_texts: int | None, as_json: bool) -> int:
    """The text branch of ``advisor recommend``: prints the advice; bad input raises a one-line AdvisorError."""
    measured, ranked = recommend_text(data, results, n_texts)
    n = n_texts or measured["n_texts"]
    if as_json:
        print(json.dumps({"measured": measured, "n_texts": n, "options": ranked}, indent=2))
    else:
        print(format_text_recommendation(measured, ranked, n), file=sys.stdout)
    return 0
