"""Measure a user's image folder (``advisor recommend --data-dir PATH``): size, classes, image sizes, domain gap.

Counting and reading image headers is instant and needs no TensorFlow; the domain gap runs a fixed sample of
the folder (and the study's natural-photo reference) through each frozen backbone the advisor was fitted with,
exactly as the study measured its own datasets (``study.probes.domain.measure``), then expresses the Fréchet distance
relative to the study's natural datasets (``advisor.data.gap_scales``) and averages over backbones.

The folder layout is the study's: one sub-folder per class, or ``train/`` + ``test/`` (``val/``) each holding the
class sub-folders (``val/`` beside both joins the training pool).
Without ``train/``, every image counts as a training image (a user will train on all of them).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from advisor.data import AdvisorError
from study.errors import StudyError

SIZE_SAMPLE = 200
"""Image headers read to estimate the typical native size."""
HELD_OUT_PARTS = ("test", "validation", "val")
"""Sub-folders that, beside ``train/``, make an official split (``study.data.datasets.register_image_folder``)."""


def _has_images(folder: Path) -> bool:
    from study.data.readers import IMAGE_EXTENSIONS

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
    parts = {e.name for e in os.scandir(root) if e.is_dir()}
    held_out = sorted(parts & set(HELD_OUT_PARTS))
    if ("train" in parts) != bool(held_out):
        have, lack = ("train/", "test/") if "train" in parts else (f"{held_out[0]}/", "train/")
        raise AdvisorError(f"--data-dir {root} has {have} but no {lack} beside it; use either train/<class>/ plus "
                           f"test/<class>/ (held-out images), or the class sub-folders directly in {root}")  # fmt: skip
    return root.resolve()


def check_cache(cache: Path) -> None:
    """The decoded-image and activation cache must be writable (measuring and training write there)."""
    from study.config import check_writable

    check_writable(cache, "the cache folder", "set TRANSFER_STUDY_CACHE to a folder you can write to")


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
    with loaded_folder(path, domain, 32) as (root, spec, ds):
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
            traits["gap"], traits["gap_by_backbone"] = _gap(ds.name, gap_scales, image_size, warn)
        return traits


MIN_TRAIN = 2
"""Training-pool images each class needs: one to train on and one to validate with (``study.data.sampling``)."""


@contextlib.contextmanager
def loaded_folder(path: str | Path, domain: str, image_size: int) -> Iterator[tuple[Path, Any, Any]]:
    """The user's folder as a temporary dataset, loaded at ``image_size``: ``(root, spec, dataset)``.

    Checks the folder, the cache and the split first; any ``StudyError`` inside becomes the one-line
    ``AdvisorError`` "--data-dir ROOT: ..."; the registration is undone whatever happens.
    """
    from study import config
    from study.data import catalog as study_data
    from study.data.datasets import DATASETS, register_image_folder, unregister_dataset

    root = check_folder(path)
    check_cache(config.cache_dir())
    name = folder_dataset_name(root)
    # already registered by the caller (advisor train probes and pilots the folder it is training on): reuse it,
    # and leave the registration to its owner
    owned = name not in DATASETS.list()
    try:
        spec = register_image_folder(name, root, domain) if owned else DATASETS.get(name)
        ds = study_data.load(name, image_size, config.data_dirs(), config.cache_dir(), allow_download=False)
        check_split(root, ds, spec.test_split == "official")
        yield root, spec, ds
    except AdvisorError:
        raise
    except StudyError as error:
        raise AdvisorError(f"--data-dir {root}: {error}") from None
    finally:
        if owned:
            unregister_dataset(name)


def check_split(root: Path, ds: Any, official: bool) -> None:
    """At least two classes, and per class two pool images (train + validation) and one test image.

    Checked on the folder's real split (what training and the domain gap will use) right after counting,
    so a folder that cannot be trained on is refused before anything slow.
    """
    names = list(ds.class_names)
    if len(names) < 2:
        only = f" ({names[0]}/)" if names else ""
        raise AdvisorError(f"--data-dir {root} has only one class{only}; put one sub-folder of images per class in "
                           "it (at least two classes)")  # fmt: skip
    pool = np.bincount(ds.pool.labels, minlength=len(names))
    test = np.bincount(ds.test.labels, minlength=len(names))
    for k, cls in enumerate(names):
        if official and pool[k] < MIN_TRAIN:
            raise AdvisorError(f"--data-dir {root} has too few images: class {cls!r} has {pool[k]} in train/; each"
                               f" class needs {MIN_TRAIN} there (to train and to validate): add images")  # fmt: skip
        if official and test[k] < 1:
            raise AdvisorError(f"--data-dir {root} has too few images: class {cls!r} has none in test/; each class "
                               "needs at least 1 held-out image there: add images")  # fmt: skip
        if not official and (pool[k] < MIN_TRAIN or test[k] < 1):
            n = int(pool[k] + test[k])
            raise AdvisorError(f"--data-dir {root} has too few images: class {cls!r} has {n} image{'s' * (n != 1)}; "
                               f"each class needs at least {MIN_TRAIN + 1} (one to train, one to validate, one to "
                               "test): add images")  # fmt: skip


def _gap(
    name: str, scales: dict[tuple[str, int], float], image_size: int | None, warn: Callable[[str], None] | None
) -> tuple[float | None, dict[str, float]]:
    from study import config
    from study.cache.features import FeatureEngine
    from study.data import catalog as study_data
    from study.probes.domain import gap_distance

    cache = config.cache_dir()
    engine = FeatureEngine(cache, config.weights_dirs())

    def load(dataset: str, size: int) -> Any:
        return study_data.load(dataset, size, config.data_dirs(), cache)

    by_backbone: dict[str, float] = {}
    for backbone in sorted({b for b, _ in scales}):
        sizes = sorted(s for b, s in scales if b == backbone)
        size = min(sizes, key=lambda s: abs(s - (image_size or s)))
        try:
            distance = gap_distance(load(name, size), backbone, size, engine, load)
        except (StudyError, ValueError, np.linalg.LinAlgError) as error:  # missing weights/data, too few images
            if warn:
                warn(f"could not measure the domain gap with {backbone}: {str(error).splitlines()[0]}")
            continue
        by_backbone[backbone] = distance / scales[(backbone, size)]
    gap = float(np.mean(list(by_backbone.values()))) if by_backbone else None
    return gap, by_backbone
