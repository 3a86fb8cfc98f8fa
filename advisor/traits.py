"""Measure a user's image folder (``advisor recommend --data-dir PATH``): size, classes, image sizes, domain gap.

Counting and reading image headers is instant and needs no TensorFlow; the domain gap runs a fixed sample of
the folder (and the study's natural-photo reference) through each frozen backbone the advisor was fitted with,
exactly as the study measured its own datasets (``study.probes.domain.measure``), then expresses the Fréchet distance
relative to the study's natural datasets (``advisor.data.gap_scales``) and averages over backbones.

The folder layout is the study's: one sub-folder per class, or ``train/`` + ``test/`` (``val/``) each holding the
class sub-folders. Without ``train/``, every image counts as a training image (a user will train on all of them).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from advisor.data import AdvisorError
from study.errors import StudyError

SIZE_SAMPLE = 200
"""Image headers read to estimate the typical native size."""


def _has_images(folder: Path) -> bool:
    from study.data.loaders import IMAGE_EXTENSIONS

    for _, _, files in os.walk(folder):
        if any(Path(f).suffix.lower() in IMAGE_EXTENSIONS and not f.startswith(".") for f in files):
            return True
    return False


def check_folder(path: str | Path) -> Path:
    """The folder resolved, or a one-line ``AdvisorError`` saying what is wrong with it (no TensorFlow)."""
    root = Path(path).expanduser()
    layout = "put one sub-folder of images per class in it (e.g. cats/, dogs/)"
    if not root.exists():
        raise AdvisorError(f"--data-dir {root} does not exist; pass a folder and {layout}")
    if not root.is_dir():
        raise AdvisorError(f"--data-dir {root} is not a folder; pass a folder and {layout}")
    if not any(not e.name.startswith(".") for e in os.scandir(root)):
        raise AdvisorError(f"--data-dir {root} is empty; {layout}")
    if not _has_images(root):
        raise AdvisorError(f"--data-dir {root} holds no images (.jpg, .png, ...); {layout}")
    return root.resolve()


def native_size(paths: list[Path]) -> int | None:
    """Median shorter side, in pixels, of a fixed sample of the images (headers only, nothing decoded)."""
    from PIL import Image

    sides = []
    for p in paths[:: max(1, len(paths) // SIZE_SAMPLE)][:SIZE_SAMPLE]:
        try:
            with Image.open(p) as im:
                sides.append(min(im.size))
        except OSError:
            continue
    return int(np.median(sides)) if sides else None


def folder_dataset_name(root: Path) -> str:
    """The name a user's folder is registered under: stable per path, so its decoded cache is reused."""
    return "user_" + hashlib.sha256(str(root).encode()).hexdigest()[:10]


def measure(
    path: str | Path,
    domain: str,
    *,
    gap_scales: dict[tuple[str, int], float] | None = None,
    image_size: int | None = None,
    measure_gap: bool = True,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Traits of the folder at ``path``: ``n_images``, ``n_classes``, ``imbalance``, ``native_size`` and ``gap``.

    ``gap_scales`` are the fitted advisor's units per (backbone, size); the gap is measured with each of those
    backbones at the size closest to ``image_size``. A backbone whose weights or reference data are missing is
    skipped with a warning (``warn``); with none measured, ``gap`` is None and the advisor assumes one.
    """
    from study.data import catalog as study_data
    from study.data.datasets import register_image_folder, unregister_dataset

    root = check_folder(path)
    name = folder_dataset_name(root)
    try:
        spec = register_image_folder(name, root, domain)
        ds = study_data.load(name, 32, allow_download=False)
        labels = np.concatenate([ds.pool.labels, ds.test.labels])
        pool_only = spec.test_split == "official"
        n_images = len(ds.pool) if pool_only else len(labels)
        counted = ds.pool.labels if pool_only else labels
        shares = np.bincount(counted, minlength=ds.n_classes) / max(1, len(counted))
        files = [root / i for i in [*ds.pool.ids, *ds.test.ids]]
        traits: dict[str, Any] = {"n_images": int(n_images), "n_classes": int(ds.n_classes),
                                  "imbalance": float(shares.max()), "native_size": native_size(sorted(files)),
                                  "gap": None}  # fmt: skip
        if measure_gap and gap_scales:
            traits["gap"], traits["gap_by_backbone"] = _gap(name, gap_scales, image_size, warn)
        return traits
    except StudyError as error:
        raise AdvisorError(f"--data-dir {root}: {error}") from None
    finally:
        unregister_dataset(name)


def _gap(
    name: str, scales: dict[tuple[str, int], float], image_size: int | None, warn: Callable[[str], None] | None
) -> tuple[float | None, dict[str, float]]:
    from study import config
    from study.cache.features import FeatureEngine
    from study.data import catalog as study_data
    from study.probes.domain import measure as measure_scores

    cache = config.cache_dir()
    engine = FeatureEngine(cache)

    def load(dataset: str, size: int) -> Any:
        return study_data.load(dataset, size, cache_dir=cache)

    by_backbone: dict[str, float] = {}
    for backbone in sorted({b for b, _ in scales}):
        sizes = sorted(s for b, s in scales if b == backbone)
        size = min(sizes, key=lambda s: abs(s - (image_size or s)))
        try:
            scores = measure_scores(load(name, size), backbone, size, engine, load)
        except (StudyError, ValueError, np.linalg.LinAlgError) as error:  # missing weights/data, too few images
            if warn:
                warn(f"could not measure the domain gap with {backbone}: {str(error).splitlines()[0]}")
            continue
        by_backbone[backbone] = float(scores["frechet_distance"]) / scales[(backbone, size)]
    gap = float(np.mean(list(by_backbone.values()))) if by_backbone else None
    return gap, by_backbone
