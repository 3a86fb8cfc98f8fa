"""Where the advisor's evidence comes from: the results store, or the tables ``python -m study.analysis.export`` wrote.

``load_results(source)`` returns the two tidy frames the advisor fits on: one row per complete run (metrics
flattened, as ``study.analysis.tables.results_frame``) and one row per (dataset, backbone, image size) similarity
measurement (as ``study.analysis.tables.similarity_table``). ``prepare`` turns them into the training table: degenerate
runs dropped (``study.analysis.stats.mark_degenerate``), the domain gap attached to every run, traits derived.

Why a relative gap: a Fréchet distance depends on the backbone's feature width and the image size, so the raw
numbers of two backbones are not comparable. Dividing by the median distance of the study's natural-photo
datasets for the same (backbone, size) puts them on one scale: about 1 = as close to ImageNet as a typical
natural-photo dataset, 4 = four times as far.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from study.errors import StudyError

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO / "results" / "reference"
STUDY_DB = REPO / "results" / "study.db"
JSON_COLUMNS = ("metrics", "curves", "params", "provenance", "similarity")
NATURAL = "natural"
SHIFTED = "shifted"
OTHER = "other"
"""The domain label for "none of the study's domains": accepted, and always flagged as an extrapolation."""

NO_RESULTS = (
    "no results to fit on: pass --results with a results store URL, a .db file or an export folder "
    "(python -m study.analysis.export), or run a sweep first (make study)"
)


class AdvisorError(StudyError):
    """A problem with the advisor's input, explained in one line (the CLI prints it and exits 2)."""


# ---------------------------------------------------------------------------------------------------- loading


def default_source() -> str | Path:
    """The committed reference study when the checkout carries one, else the local sweep's database.

    Looked up beside the package (an editable install or a checkout), then in the working directory.
    """
    local = Path.cwd() / "results"
    for reference in (REFERENCE_DIR, local / "reference"):
        if (reference / "runs.parquet").is_file() or (reference / "runs.csv").is_file():
            return reference
    for db in (STUDY_DB, local / "study.db"):
        if db.is_file():
            return db
    raise AdvisorError(NO_RESULTS)


def load_results(source: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(runs, similarity)`` from a SQLAlchemy URL, a ``.db`` file or an export folder (``runs.parquet``).

    ``None`` means the committed reference study (``results/reference/``), falling back to
    ``results/study.db``. Raises ``AdvisorError`` with one line when there is nothing to fit on.
    """
    src = default_source() if source is None else source
    text = str(src)
    if "://" in text:
        runs, sims = _from_store(text)
    else:
        path = Path(text).expanduser()
        if path.is_dir():
            runs, sims = _from_export(path)
        elif path.is_file():
            runs, sims = _from_store(f"sqlite:///{path.resolve()}")
        else:
            raise AdvisorError(f"results source {text} does not exist; {NO_RESULTS.split(': ', 1)[1]}")
    if runs.empty:
        raise AdvisorError(f"{NO_RESULTS} ({text} has no complete runs)")
    runs.attrs["source"] = text
    return runs, sims


def _from_store(url: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    from study.analysis.tables import results_frame, similarity_table
    from study.engine.store import ResultsStore

    store = ResultsStore(url, create=False)
    try:
        try:
            runs = results_frame(store)
        except StudyError:
            return pd.DataFrame(), pd.DataFrame()
        return runs, similarity_table(store)
    finally:
        store.close()


def _read_table(folder: Path, table: str) -> pd.DataFrame | None:
    from study.analysis.export import read_table

    try:
        return read_table(folder, table)
    except StudyError as error:
        raise AdvisorError(str(error)) from None


def _decode(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for name in JSON_COLUMNS:
        if name in frame.columns:
            frame[name] = frame[name].map(lambda v: json.loads(v) if isinstance(v, str) else None)
    return frame


def _from_export(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from study.analysis.tables import flatten, similarity_table

    runs = _read_table(folder, "runs")
    if runs is None:
        raise AdvisorError(
            f"{folder} holds no runs.parquet or runs.csv; export one with python -m study.analysis.export"
        )
    runs = _decode(runs)
    if "status" in runs.columns:
        runs = runs[runs["status"] == "complete"]
    runs = flatten(runs.reset_index(drop=True)) if not runs.empty else runs
    datasets = _read_table(folder, "datasets")
    rows = [] if datasets is None else _decode(datasets).to_dict("records")
    return runs, similarity_table(SimpleNamespace(datasets=lambda: rows))


# ---------------------------------------------------------------------------------------------------- preparing


def gap_scales(similarity: pd.DataFrame | None) -> dict[tuple[str, int], float]:
    """Per (backbone, image size): the median Fréchet distance of the natural-photo datasets (the unit)."""
    if similarity is None or similarity.empty or "frechet_distance" not in similarity.columns:
        return {}
    ok = similarity.dropna(subset=["frechet_distance", "backbone", "image_size"])
    scales: dict[tuple[str, int], float] = {}
    for (backbone, size), group in ok.groupby(["backbone", "image_size"]):
        natural = group[group["domain"] == NATURAL]["frechet_distance"]
        unit = float((natural if len(natural) else group["frechet_distance"]).median())
        if unit > 0:
            scales[(str(backbone), int(size))] = unit
    return scales


def relative_gaps(similarity: pd.DataFrame | None) -> pd.DataFrame:
    """Per dataset and image size: the relative gap, averaged over the backbones that measured it.

    Averaged because a dataset's distance from ImageNet is a trait of the dataset (what a user measures once);
    every backbone's row of that dataset gets the same value.
    """
    scales = gap_scales(similarity)
    if not scales:
        return pd.DataFrame(columns=["dataset", "image_size", "gap"])
    ok = similarity.dropna(subset=["frechet_distance", "backbone", "image_size"]).copy()
    ok["unit"] = [scales.get((str(b), int(s)), math.nan) for b, s in zip(ok["backbone"], ok["image_size"], strict=True)]
    ok["gap"] = ok["frechet_distance"] / ok["unit"]
    ok["image_size"] = ok["image_size"].astype(int)
    return ok.groupby(["dataset", "image_size"], as_index=False)["gap"].mean()


def single_image_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows the image advisor learns from: image strategies on one dataset (text rows have their own advisor,
    ``advisor.text``; source -> target pair cells answer the domain-adaptation question)."""
    from study.analysis.stats import is_pair
    from study.train.strategies import strategy_or_none

    def image(name: str) -> bool:
        record = strategy_or_none(name)
        return record is None or (record.modality == "image" and not record.pair)  # unknown: a plugin's, kept

    keep = runs["strategy"].map(image).astype(bool) & ~is_pair(runs)
    return runs[keep]


def prepare(runs: pd.DataFrame, similarity: pd.DataFrame | None = None) -> pd.DataFrame:
    """The advisor's training table: usable runs only, with the traits every model reads.

    Adds ``group`` (the base dataset: a shift-ladder level belongs to its base), ``gap`` (relative domain gap,
    NaN when unmeasured), ``imbalance`` (pool majority share; NaN when unknown), ``cost_minutes``.
    """
    from study.analysis.stats import SEPARATE, check_one_budget, mark_degenerate

    need = ["dataset", "n_images", "strategy", "backbone", "image_size", "accuracy", "majority_share"]
    missing = [c for c in need if c not in runs.columns]
    if missing:
        raise AdvisorError(f"the results table lacks the columns {missing}; is it a transfer-study results table?")
    frame = single_image_runs(runs).dropna(subset=["accuracy"])
    if frame.empty:
        raise AdvisorError(NO_RESULTS)
    try:
        check_one_budget(frame, SEPARATE)
    except StudyError as error:
        raise AdvisorError(str(error)) from None
    frame = mark_degenerate(frame)
    frame = frame[~frame["degenerate"]].copy()
    if frame.empty:
        raise AdvisorError(f"{NO_RESULTS} (every run in the table is degenerate)")
    frame["n_images"] = frame["n_images"].astype(int)
    frame["image_size"] = frame["image_size"].astype(int)
    frame["accuracy"] = frame["accuracy"].astype(float)
    frame["domain"] = _domains(frame, similarity)
    frame["group"] = base_groups(frame)
    frame["n_classes"] = _num(frame, "n_classes")
    frame["imbalance"] = _num(frame, "pool_majority_share")
    seconds = _num(frame, "train_seconds").fillna(0.0) + _num(frame, "extract_seconds").fillna(0.0)
    frame["cost_minutes"] = seconds / 60.0
    frame = frame.drop(columns=["gap"], errors="ignore")
    gaps = relative_gaps(similarity)
    frame = frame.merge(gaps, on=["dataset", "image_size"], how="left") if not gaps.empty else frame.assign(gap=np.nan)
    return frame.reset_index(drop=True)


def _domains(frame: pd.DataFrame, similarity: pd.DataFrame | None) -> pd.Series:
    """Each run's domain label: the row's own, else the datasets table's, else the registry's, else ``other``.

    Why three sources: the store's ``runs.domain`` can be empty (the claimed cell carries no domain), while the
    ``datasets`` table and the dataset registry know it; a shift-ladder level is always ``shifted``.
    """
    from study.data.catalog import describe

    known: dict[str, str] = {}
    if similarity is not None and not similarity.empty and "domain" in similarity.columns:
        known = {str(d): str(m) for d, m in zip(similarity["dataset"], similarity["domain"], strict=True) if m}

    def registry(name: str) -> str | None:
        try:
            return describe(name).domain
        except StudyError:
            return None

    own = frame["domain"] if "domain" in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    labels = []
    for label, name in zip(own, frame["dataset"].astype(str), strict=True):
        if not isinstance(label, str) or not label:
            label = known.get(name) or registry(name) or OTHER
        labels.append(label)
    return pd.Series(labels, index=frame.index, dtype=object)


def base_groups(frame: pd.DataFrame) -> pd.Series:
    """The base dataset of every row: a shift-ladder level (``base@shift``) belongs to its base."""
    base = frame["base_dataset"] if "base_dataset" in frame.columns else pd.Series(None, index=frame.index)
    pairs = zip(base, frame["dataset"], strict=True)
    names = [b if isinstance(b, str) and b else str(d).split("@")[0] for b, d in pairs]
    return pd.Series(names, index=frame.index, dtype=object)


def _num(frame: pd.DataFrame, name: str) -> pd.Series:
    if name not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[name], errors="coerce").astype(float)


def rows_checksum(frame: pd.DataFrame) -> str:
    """A short fingerprint of the runs a model was fit on: same rows and numbers, same checksum."""
    cols = [c for c in ("dataset", "n_images", "strategy", "backbone", "image_size", "seed", "accuracy") if c in frame]
    canon = frame[cols].astype(str).sort_values(cols).to_csv(index=False)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def describe_source(runs: pd.DataFrame) -> str:
    """The source string ``load_results`` recorded on the frame, or ``<DataFrame>`` for a frame built in memory."""
    return str(runs.attrs.get("source", "<DataFrame>"))


def as_json(value: Any) -> Any:
    """Plain JSON values (numpy scalars and NaN become Python numbers and None)."""
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
