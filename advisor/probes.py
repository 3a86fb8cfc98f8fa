"""Probes of frozen backbones on N training images: a user's folder, or every cell of a results store.

What the advisor is given at advice time (``advisor recommend --data-dir``) and what it is fitted on must be the same
numbers, so both go through ``probe_images``: pooled frozen features from the activation cache
(``study.cache.features.FeatureEngine``, extracted once per image, backbone and size), then
``study.probes.scores.probe_scores`` on the training images only.

- **a folder** (``folder_probes``): its training pool: every image when it has no ``train/`` split, minus the fixed
  20 % that ``advisor train`` holds out for testing; the ``train/`` images when it has one. The held-out images
  never enter a probe;
- **a study cell** (``cell_probes``): the cell's N images, exactly the training and validation indices that
  ``study.engine.cell.CellRunner.cell_data`` draws for that (dataset, n, seed), never its test split. The probes
  depend on (dataset, n_images, seed, image_size, backbone), not on the strategy, so every strategy of a cell
  shares one row.

Where the cell table lives: a Parquet file, ``probes.parquet``, beside the runs it describes (in an export folder,
or ``<name>.probes.parquet`` beside a ``.db`` file). A table in the store would need a schema change in the engine
(another engineer's module) and would not travel with the committed export (``results/reference/`` holds Parquet
files, no database); the file is keyed like the runs, carries the data and weights checksums, and is rebuilt
incrementally (rows already present are kept).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from advisor.data import OTHER, AdvisorError
from study.cache.json_files import cache_json, cached_json
from study.errors import StudyError

PROBES_FILE = "probes.parquet"
PROBES_VERSION = 4
"""Bump when ``study.probes.scores`` changes what it computes: cached scores of older versions are ignored (4: the
linear probe and kNN averaged over ``repeats_for(n)`` fold partitions)."""
KEY = ["dataset", "n_images", "seed", "image_size", "backbone"]
COLUMNS = [*KEY, "linear_probe_accuracy", "linear_probe_std", "knn_accuracy", "logme", "n", "n_classes", "folds",
           "repeats", "data_checksum", "weights_checksum", "extract_seconds", "probe_seconds",
           "probes_version"]  # fmt: skip


def probe_images(engine: Any, data: Any, backbone: str, rows: np.ndarray, labels: np.ndarray,
                 groups: np.ndarray | None, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """Pooled features of the pool ``rows`` of ``data`` (a ``CellData``) through ``backbone``, then the probes.

    The scores are kept in the cache folder beside the activations, keyed by everything they depend on (data
    content, backbone weights, image size, the rows, labels, groups, seed and ``PROBES_VERSION``): asking again
    about the same images costs a file read, not the cross-validation.
    """
    from study.probes.scores import probe_scores
    from study.zoo.backbones import get_backbone, resolve_weights, weights_checksum

    spec = get_backbone(backbone)
    weights = weights_checksum(resolve_weights(spec, engine.weights))
    key = hashlib.sha256(json.dumps([PROBES_VERSION, data.fingerprint, backbone, weights, int(data.image_size),
                                     int(seed)]).encode())  # fmt: skip
    for part in (rows, labels, groups):
        key.update(b"|" if part is None else np.ascontiguousarray(np.asarray(part).astype(str)).tobytes())
    stored = Path(engine.cache.root).parent / "probes" / f"{key.hexdigest()[:32]}.json"
    hit = cached_json(stored)  # None when missing or unreadable: recompute and rewrite
    if isinstance(hit, dict):
        return {**hit, "extract_seconds": 0.0, "probe_seconds": 0.0}
    t0 = time.perf_counter()
    features = engine.pooled(data, spec, "pool", rows)[0].astype(np.float64)
    extract = time.perf_counter() - t0
    scores = probe_scores(features, labels, groups, seed=seed)
    out = {**scores, "data_checksum": data.fingerprint, "extract_seconds": extract, "weights_checksum": weights,
           "probe_seconds": scores.pop("seconds")}  # fmt: skip
    cache_json(stored, out)
    return out


# ---------------------------------------------------------------------------------------------------- a folder


def folder_probes(path: str | Path, backbones: list[str], image_size: int, *, progress: bool = True,
                  warn: Callable[[str], None] | None = None) -> pd.DataFrame:  # fmt: skip
    """One row per backbone: the probes of the folder's training images (``PROBE_KEYS`` and timings).

    A backbone whose weights are missing is skipped with a warning; none measured is a one-line ``AdvisorError``.
    """
    from tqdm import tqdm

    from advisor.traits import loaded_folder
    from study import config
    from study.cache.features import FeatureEngine
    from study.data.cell_data import CellData

    rows = []
    with loaded_folder(path, OTHER, image_size) as (root, _, ds):
        idx = np.arange(len(ds.pool))
        data = CellData(ds.name, ds.domain, list(ds.class_names), ds.source_checksum, image_size, ds.pool, ds.test,
                        idx, idx[:0], idx[:0])  # fmt: skip
        engine = FeatureEngine(config.cache_dir(), config.weights_dirs())
        groups = None if ds.pool.groups is None else ds.pool.groups[idx]
        bar = tqdm(backbones, desc=f"probing {len(idx)} images", unit="backbone", disable=not progress,
                   file=sys.stderr)  # fmt: skip
        for backbone in bar:
            bar.set_postfix_str(backbone)
            try:
                scores = probe_images(engine, data, backbone, idx, ds.pool.labels[idx], groups)
            except StudyError as error:
                if "class" in str(error) and "training image" in str(error):
                    raise AdvisorError(f"--data-dir {root}: {error}; add images") from None
                if warn:
                    warn(f"no probes with {backbone}: {str(error).splitlines()[0]}")
                continue
            rows.append({"backbone": backbone, "image_size": image_size, **scores})
    if not rows:
        raise AdvisorError(f"--data-dir {root}: no backbone could be probed (missing weights?); see the warnings")
    return pd.DataFrame(rows)


def probe_ranking(folder: str | Path, advisor: Any, runs: pd.DataFrame, similarity: pd.DataFrame | None,
                  traits: dict[str, Any], results: str | Path | None, *, backbone: str | None = None,
                  image_size: int | None = None, warn: Callable[[str], None] | None = None,
                  progress: bool = True, ranking_only: bool = False, gain: Any = None
                  ) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:  # fmt: skip
    """(the folder's probes per backbone, the probe-based advisor's ranking or None without the study's cell probes).

    ``advisor recommend --data-dir`` and ``advisor train`` both go through here, so the model a user trains is the
    option the recommendation ranked first. ``ranking_only``: without cell probes, return (None, None) at once
    instead of probing the folder only to show the probes. ``gain``: an already fitted gain model (``fit_gain``).
    """
    from study.engine.store import NO_BACKBONE

    study_probes = load_probes(results) if gain is None else None
    if gain is None and study_probes is None and ranking_only:
        return None, None

    backbones = [b for b in advisor.backbones_ if b != NO_BACKBONE]
    if backbone:
        backbones = [b for b in backbones if b == backbone]
    size = image_size or advisor.default_size_
    probes = folder_probes(folder, backbones, size, progress=progress, warn=warn)
    if gain is None and study_probes is None:
        if warn:
            warn("these results carry no cell probes (advisor probes --results SOURCE writes them): the ranking "
                 "rests on the traits; the probes are shown for reference")  # fmt: skip
        return probes, None
    if gain is None:
        gain = fit_gain(runs, similarity, study_probes)
    return probes, gain.predict(traits, probes)


def fit_gain(runs: pd.DataFrame, similarity: pd.DataFrame | None, study_probes: pd.DataFrame | None) -> Any:
    """The probe-based advisor fitted on the study's runs and cell probes (None without cell probes)."""
    from advisor.fitted import cached_fit
    from advisor.gain import GainModel

    if study_probes is None:
        return None
    return cached_fit("gain", lambda: GainModel().fit(runs, similarity, study_probes), runs, similarity, study_probes)


# ---------------------------------------------------------------------------------------------------- study cells


def probes_path(source: str | Path | None) -> Path | None:
    """Where the probes table of a results source lives (None for a store URL: pass ``--out``)."""
    from advisor.data import default_source

    src = Path(str(default_source() if source is None else source)).expanduser()
    if "://" in str(source or ""):
        return None
    if src.is_dir():
        return src / PROBES_FILE
    return src.with_name(f"{src.stem}.{PROBES_FILE}")


def load_probes(source: str | Path | None) -> pd.DataFrame | None:
    """The probes table beside a results source, or None when it has none."""
    path = probes_path(source)
    if path is None or not path.is_file():
        return None
    try:
        table = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises many types; all mean "unreadable"
        raise AdvisorError(f"cannot read {path}: {str(error).splitlines()[0]}; delete it and rerun advisor probes"
                           ) from None  # fmt: skip
    if "probes_version" not in table.columns or table.empty:
        return table
    # Probes of an older definition sit on another scale than the user's folder's: never fit on them.
    current = table[table["probes_version"] == PROBES_VERSION]
    if current.empty:
        raise AdvisorError(f"{path} holds probes of an older definition (version "
                           f"{int(table['probes_version'].max())}, now {PROBES_VERSION}); recompute them: advisor "
                           f"probes --results {path.parent}")  # fmt: skip
    return current.reset_index(drop=True)


def study_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """The distinct (dataset, n_images, seed, image_size, backbone) of the complete runs that used a backbone."""
    from advisor.data import single_image_runs
    from study.engine.store import NO_BACKBONE

    ok = single_image_runs(runs).dropna(subset=["accuracy"])  # text rows and pair cells have no image probes
    ok = ok[ok["backbone"] != NO_BACKBONE]
    cells = ok[KEY].drop_duplicates().astype({"n_images": int, "seed": int, "image_size": int})
    return cells.sort_values(["dataset", "image_size", "backbone", "seed", "n_images"]).reset_index(drop=True)


def cell_probes(runs: pd.DataFrame, out: Path, *, progress: bool = True, limit: int | None = None,
                datasets: list[str] | None = None) -> pd.DataFrame:  # fmt: skip
    """Probe every study cell of ``runs`` missing from ``out`` and write the table (atomically, after each one).

    Returns the whole table. ``limit`` stops after that many new cells (a subset, e.g. to time it).
    """
    from tqdm import tqdm

    from study import config
    from study.engine.cell import CellRunner
    from study.engine.grid import Cell

    cells = study_cells(runs)
    if datasets:
        cells = cells[cells["dataset"].isin(datasets)]
    done = pd.read_parquet(out) if out.is_file() else pd.DataFrame(columns=COLUMNS)
    if "probes_version" not in done.columns:
        done = done.iloc[0:0].reindex(columns=COLUMNS)  # written before probes were versioned: recompute all
    done = done[done["probes_version"] == PROBES_VERSION]  # rows of an older probe definition are recomputed
    have = set(map(tuple, done[KEY].astype({"n_images": int, "seed": int, "image_size": int}).to_numpy().tolist()))
    todo = [c for c in cells.itertuples(index=False) if tuple(c) not in have][:limit]
    runner = CellRunner(config.cache_dir(), config.data_dirs(), config.weights_dirs())
    rows = done.to_dict("records")
    for c in tqdm(todo, desc="cell probes", unit="cell", disable=not progress, file=sys.stderr):
        cell = Cell(dataset=c.dataset, n_images=int(c.n_images), strategy="linear_probe", backbone=c.backbone,
                    image_size=int(c.image_size), seed=int(c.seed), epochs=1, trials=1, augment=False, max_test=None,
                    grid="probes")  # fmt: skip
        data = runner.cell_data(cell)
        idx = np.sort(np.concatenate([data.train_idx, data.val_idx]))  # the cell's N images; never its test split
        groups = None if data.pool.groups is None else data.pool.groups[idx]
        scores = probe_images(runner.engine, data, c.backbone, idx, data.pool.labels[idx], groups, seed=int(c.seed))
        rows.append({**dict(zip(KEY, tuple(c), strict=True)), **scores, "probes_version": PROBES_VERSION})
        _write(pd.DataFrame(rows, columns=COLUMNS), out)
    return pd.DataFrame(rows, columns=COLUMNS)


def _write(table: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    table.to_parquet(tmp, index=False)
    os.replace(tmp, out)
