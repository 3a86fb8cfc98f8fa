"""Domain similarity as a measured axis: how far a dataset sits from ImageNet-like natural photos.

For a (dataset, backbone, image size) the study takes a fixed stratified sample of the dataset's pool
(``SAMPLE`` images, seed 0), runs it through the frozen backbone (pooled features, via the activation cache
that the cells reuse anyway), and computes (``study.probes.similarity``):

- ``frechet_distance``: the domain gap, a Fréchet distance between Gaussians fitted to the sample's features
  and to a fixed reference of natural photos: ``REFERENCE_PER_DATASET`` images from each of the data pack's
  natural-photo pools (``REFERENCE_DATASETS``), at the same size and backbone. Lower = closer to natural photos.
- ``logme`` (You et al., ICML 2021): label-aware transferability of the frozen features; higher = better.
- ``knn_accuracy`` / ``linear_probe_accuracy``: 5-fold cross-validated on the same sample; for a dataset with
  groups (``DatasetSpec.group_pattern``: patients, slides, tracks) the folds keep each group whole, as the study's
  own splits do, so near-duplicates from one group never sit on both sides of a fold.

The same function serves a user's own folder (``--data-dir`` in the advisor): ~500 images take well under a
minute on CPU at 96 px.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from study.cache.features import FeatureEngine
from study.data.cell_data import CellData
from study.data.loaders import LoadedDataset
from study.data.sampling import stratified_subset
from study.errors import StudyError
from study.probes.similarity import frechet_distance, similarity_report
from study.zoo.backbones import BackboneSpec, get_backbone

SAMPLE = 500
REFERENCE_DATASETS = ("cats_and_dogs_filtered", "cifar10_subset")
REFERENCE_PER_DATASET = 250
SCORE_KEYS = ("frechet_distance", "logme", "knn_accuracy", "linear_probe_accuracy")
log = logging.getLogger("study.probes.domain")


def _cell(ds: LoadedDataset, size: int, idx: np.ndarray) -> CellData:
    return CellData(ds.name, ds.domain, list(ds.class_names), ds.source_checksum, size, ds.pool, ds.test, idx,
                    idx[:0], idx[:0])  # fmt: skip


def sample_features(ds: LoadedDataset, spec: BackboneSpec, size: int, engine: FeatureEngine, n: int = SAMPLE
                    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Pooled frozen features and labels of a fixed stratified sample of the pool (deterministic)."""
    idx = _sample_index(ds, n)
    feats = engine.pooled(_cell(ds, size, idx), spec, "pool", idx)[0]
    return feats.astype(np.float64), ds.pool.labels[idx]


def _sample_index(ds: LoadedDataset, n: int = SAMPLE) -> np.ndarray:
    n = min(n, len(ds.pool))
    return stratified_subset(ds.pool.labels, n, seed=0) if n < len(ds.pool) else np.arange(len(ds.pool))


def sample_groups(ds: LoadedDataset, n: int = SAMPLE) -> np.ndarray | None:
    """The group id of each image of ``sample_features``' sample (None for a dataset without groups)."""
    return None if ds.pool.groups is None else ds.pool.groups[_sample_index(ds, n)]


def reference_features(spec: BackboneSpec, size: int, engine: FeatureEngine, load: Any) -> np.ndarray:
    """The natural-photo reference: the same fixed samples of the pack's natural datasets, stacked."""
    return np.concatenate(
        [sample_features(load(name, size), spec, size, engine, REFERENCE_PER_DATASET)[0] for name in REFERENCE_DATASETS]
    )


def measure(ds: LoadedDataset, backbone: str, size: int, engine: FeatureEngine, load: Any) -> dict[str, Any]:
    """All similarity scores of one dataset for one backbone and size, with the time it took."""
    t0 = time.perf_counter()
    spec = get_backbone(backbone)
    feats, labels = sample_features(ds, spec, size, engine)
    ref = reference_features(spec, size, engine, load)
    report = similarity_report(feats, labels, ref, groups=sample_groups(ds))
    report.update(backbone=backbone, image_size=size, reference=list(REFERENCE_DATASETS),
                  reference_n=int(len(ref)), seconds=time.perf_counter() - t0)  # fmt: skip
    return report


def gap_distance(ds: LoadedDataset, backbone: str, size: int, engine: FeatureEngine, load: Any) -> float:
    """Only the Fréchet distance of ``measure`` (same sample, reference and estimator): what a user's domain gap
    needs, without the probes ``measure`` also runs on that sample (they took 28 of a folder's 60 s of gap
    measurement over five backbones, beside a sweep). One BLAS thread: small matrices, shared cores."""
    import hashlib
    from pathlib import Path

    from threadpoolctl import threadpool_limits

    from study.cache.json_files import cache_json, cached_json

    spec = get_backbone(backbone)
    feats, _ = sample_features(ds, spec, size, engine)
    ref = reference_features(spec, size, engine, load)
    # the distance is a pure function of the two feature matrices: keyed by their bytes, asking again about the same
    # images costs a file read, not the matrix square root (about half of a warm `advisor recommend --data-dir`)
    key = hashlib.sha256(b"frechet-1")
    for part in (feats, ref):
        key.update(str(part.shape).encode() + np.ascontiguousarray(part, dtype=np.float32).tobytes())
    stored = Path(engine.cache.root).parent / "gaps" / f"{key.hexdigest()[:32]}.json"
    hit = cached_json(stored)
    if isinstance(hit, dict) and "frechet_distance" in hit:
        return float(hit["frechet_distance"])
    with threadpool_limits(1):
        distance = float(frechet_distance(feats.astype(np.float64), ref.astype(np.float64)))
    cache_json(stored, {"frechet_distance": distance, "backbone": backbone, "image_size": int(size)})
    return distance


def score_key(backbone: str, size: int) -> str:
    """Where a (backbone, size)'s scores live inside a dataset's ``similarity`` JSON in the store."""
    return f"{backbone}@{size}"


def ensure_scores(
    store: Any, datasets: list[str], backbones: list[str], size: int, engine: FeatureEngine, load: Any,
    progress: bool = True,
) -> dict[tuple[str, str], dict[str, Any]]:
    """Measure (and store) the scores that the store lacks; return every requested (dataset, backbone)."""
    from tqdm import tqdm

    from study.data.catalog import describe

    known = {row["name"]: row.get("similarity") or {} for row in store.datasets()}
    todo = [(d, b) for d in datasets for b in backbones if score_key(b, size) not in known.get(d, {})]
    for d, b in tqdm(todo, desc="domain similarity", unit="dataset", disable=not progress or not todo):
        try:
            scores = measure(load(d, size), b, size, engine, load)
        except StudyError as exc:  # a dataset that cannot be read fails in its own cells, with its own error
            log.warning("no similarity scores for %s with %s: %s", d, b, exc)
            tqdm.write(f"no similarity scores for {d} ({b}): {exc}")
            continue
        store.put_dataset(d, domain=describe(d).domain, similarity={score_key(b, size): scores})
        known.setdefault(d, {})[score_key(b, size)] = scores
    return {(d, b): known[d][score_key(b, size)] for d in datasets for b in backbones if score_key(b, size) in
            known.get(d, {})}  # fmt: skip
