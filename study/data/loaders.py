"""Load a registered dataset: find (or download) it, read it through the decoded cache, split pool and test.

``load_dataset`` is the one entry point: ``study.data.readers`` reads each distributed format (image folders,
MedMNIST ``.npz``, IDX ``.gz``) into RGB uint8 arrays, ``study.data.decoded_cache`` keeps the decoded arrays on
disk between runs, and this module joins the parts, numbers the groups and draws the fixed test split. The
readers' public names (``decode_image``, ``read_idx``, ``READERS``, ``IMAGE_EXTENSIONS``, ...) are re-exported
here for code that imports them from ``study.data.loaders``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from study import config
from study.data.datasets import DatasetSpec, get_dataset
from study.data.decoded_cache import cache_key, read_cache, write_cache
from study.data.readers import (
    IGNORED_FILES,
    IMAGE_EXTENSIONS,
    LOADER_VERSION,
    READERS,
    UNREADABLE_SKIP_MAX,
    UNREADABLE_SKIP_SHARE,
    Decoded,
    Scan,
    decode_image,
    read_idx,
)
from study.data.sampling import fixed_test_split
from study.errors import StudyError

__all__ = [
    "IGNORED_FILES",
    "IMAGE_EXTENSIONS",
    "IMAGE_SIZES",
    "LOADER_VERSION",
    "READERS",
    "UNREADABLE_SKIP_MAX",
    "UNREADABLE_SKIP_SHARE",
    "ImageSet",
    "LoadedDataset",
    "Scan",
    "decode_image",
    "default_download_dir",
    "fingerprint_dataset",
    "load_dataset",
    "read_idx",
    "resolve_root",
]

log = logging.getLogger("study.data.loaders")


IMAGE_SIZES = (8, 1024)
"""Square input sizes the loaders produce (px); the entry points check flags and grid files against it."""


@dataclass
class ImageSet:
    """Images (N, S, S, 3) uint8, labels (N,) int64, and a stable id per image (relative path or part/index).

    ``groups`` (N,) int64, for datasets whose spec has a ``group_pattern``: the id of each image's group (a
    patient, a slide, a track), numbered over pool and test together so the two can be compared; else None.
    Derived from ``ids`` at load time, so the decoded cache does not store it.
    """

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: np.ndarray | Sequence[int]) -> ImageSet:
        """The images at ``idx`` (a copy), e.g. the indices from ``study.data.sampling``."""
        idx = np.asarray(idx, dtype=np.int64)
        groups = None if self.groups is None else self.groups[idx]
        return ImageSet(self.images[idx], self.labels[idx], [self.ids[i] for i in idx], groups)


@dataclass
class LoadedDataset:
    """A dataset ready for the study: the pool that subsets are drawn from, and the fixed test set."""

    name: str
    domain: str
    class_names: list[str]
    pool: ImageSet
    test: ImageSet
    source_checksum: str
    spec: DatasetSpec | None = None
    skipped: tuple[str, ...] = ()  # unreadable images left out (paths relative to the folder)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


# --------------------------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------------------------


def _concat(decoded: Decoded, parts: Sequence[str], size: int) -> ImageSet:
    if not parts:
        return ImageSet(np.empty((0, size, size, 3), np.uint8), np.empty(0, np.int64), [])
    images = np.concatenate([decoded[p][0] for p in parts]) if len(parts) > 1 else decoded[parts[0]][0]
    labels = np.concatenate([decoded[p][1] for p in parts]) if len(parts) > 1 else decoded[parts[0]][1]
    ids = [i for p in parts for i in decoded[p][2]]
    return ImageSet(images, labels.astype(np.int64, copy=False), ids)


def _group_array(spec: DatasetSpec, pool_ids: list[str], test_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Group ids of pool and test images from ``spec.group_pattern``, numbered over both (sorted group names).

    A pool image the pattern does not match is an error (a wrong pattern would silently disable the safety);
    an unmatched test image (an official test set named differently) is a group of its own.
    """
    names: list[str] = []
    for i in pool_ids:
        g = spec.group_of(i)
        if g is None:
            raise StudyError(
                f"dataset {spec.name!r}: image {i!r} does not match group_pattern {spec.group_pattern!r}; "
                "fix the pattern or the file name"
            )
        names.append(g)
    names += [spec.group_of(i) or f"image:{i}" for i in test_ids]
    _, gid = np.unique(np.asarray(names, dtype=object).astype(str), return_inverse=True)
    gid = gid.astype(np.int64)
    return gid[: len(pool_ids)], gid[len(pool_ids) :]


def default_download_dir(data_dirs: list[Path]) -> Path:
    """Where a missing dataset is downloaded: the first existing, writable data directory, else the study's own
    data folder under the user's home (``study.config.DEFAULT_HOME``)."""
    for d in data_dirs:
        if d.exists() and os.access(d, os.W_OK):
            return d
    return config.DEFAULT_HOME / "data"


def resolve_root(
    spec: DatasetSpec,
    data_dirs: list[Path],
    *,
    download_dir: Path | None = None,
    allow_download: bool = True,
) -> Path:
    """The dataset's folder on disk, downloading it when missing (see ``study.data.download.fetch``)."""
    from study.data.download import fetch, locate

    dirs = list(data_dirs)
    found = locate(spec, dirs)
    if found is not None:
        return found
    return fetch(spec, dirs, download_dir or default_download_dir(dirs), allow_download=allow_download)


def load_dataset(
    name_or_spec: str | DatasetSpec,
    image_size: int,
    data_dirs: list[Path],
    cache_dir: Path,
    *,
    download_dir: Path | None = None,
    allow_download: bool = True,
    use_cache: bool = True,
) -> LoadedDataset:
    """Load a registered dataset at ``image_size``: pool and test sets as uint8 RGB arrays.

    ``data_dirs`` and ``cache_dir`` come from the entry point (``study.config``); a dataset found nowhere is
    downloaded when it has a download and ``allow_download``. ``use_cache=False`` decodes without reading or
    writing the cache.
    """
    spec = get_dataset(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    lo, hi = IMAGE_SIZES
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) or not lo <= image_size <= hi:
        raise StudyError(f"image_size must be an integer between {lo} and {hi}, got {image_size!r}")
    size = int(image_size)
    root = resolve_root(spec, data_dirs, download_dir=download_dir, allow_download=allow_download)
    scan = READERS[spec.format](spec, root)
    checksum = cache_key(spec, scan.fingerprint)
    if spec.class_names and list(spec.class_names) != scan.class_names:
        raise StudyError(
            f"dataset {spec.name!r} at {root} has classes {scan.class_names}, expected {list(spec.class_names)}; "
            "the folder holds a different dataset or version"
        )
    parts = list(spec.parts)
    cached = None
    folder = Path(cache_dir) / "decoded" / f"{spec.name}-{size}-{checksum[:12]}"
    if use_cache:
        cached = read_cache(folder, parts)
    if cached is not None:
        class_names, decoded, skipped = cached
        if skipped:
            log.info("dataset %r: %d unreadable images in %s are skipped: %s", spec.name, len(skipped), root,
                        ", ".join(skipped))  # fmt: skip
    else:
        class_names, decoded = scan.class_names, scan.decode(size)
        skipped = list(scan.skipped)
        if use_cache:
            # a read-only or full cache disk must not stop the study; it only costs speed
            with contextlib.suppress(OSError):
                write_cache(folder, parts, class_names, decoded, str(root), skipped)
    if spec.test_split == "official":
        pool = _concat(decoded, spec.pool_parts, size)
        test = _concat(decoded, [str(spec.test_part)], size)
        if spec.group_pattern is not None:
            pool.groups, test.groups = _group_array(spec, pool.ids, test.ids)
    else:
        everything = _concat(decoded, spec.pool_parts, size)
        if spec.group_pattern is not None:
            everything.groups = _group_array(spec, everything.ids, [])[0]
        pool_idx, test_idx = fixed_test_split(everything.labels, spec.test_fraction, spec.split_seed, everything.groups)
        pool, test = everything.subset(pool_idx), everything.subset(test_idx)
    allowed = [tuple(c) for c in (spec.expected_counts, spec.full_counts) if c is not None]
    if allowed and (len(pool), len(test)) not in allowed:
        expected = " or ".join(f"{c[0]} / {c[1]}" for c in allowed)
        raise StudyError(
            f"dataset {spec.name!r} at {root} has {len(pool)} pool / {len(test)} test images, expected "
            f"{expected}; the copy is incomplete or another version: re-download it (delete that folder)"
        )
    return LoadedDataset(
        name=spec.name,
        domain=spec.domain,
        class_names=list(class_names),
        pool=pool,
        test=test,
        source_checksum=checksum,
        spec=spec,
        skipped=tuple(skipped),
    )


def fingerprint_dataset(spec: DatasetSpec, data_dirs: list[Path]) -> str | None:
    """The content fingerprint ``load_dataset`` gives as ``source_checksum``, without decoding anything.

    None when the dataset is not on disk (nothing is downloaded for a fingerprint).
    """
    from study.data.download import locate

    root = locate(spec, list(data_dirs))
    if root is None:
        return None
    return cache_key(spec, READERS[spec.format](spec, root).fingerprint)
