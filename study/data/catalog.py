"""One entry point for "dataset by name": registered datasets and their shifted variants (``base@shift``).

The sweep, the advisor and the similarity scores all go through ``load`` and ``describe`` so that a derived
dataset behaves exactly like a registered one: same splits, same caching, its own content fingerprint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from study.data import shift as shifts
from study.data.datasets import get_dataset
from study.data.loaders import ImageSet, LoadedDataset, fingerprint_dataset, load_dataset
from study.data.text import load_text_dataset, text_fingerprint
from study.errors import StudyError


@dataclass(frozen=True)
class DatasetInfo:
    """What the grid needs to know before loading anything."""

    name: str
    base: str
    domain: str
    shift: str | None
    shift_level: int | None
    pool_size: int | None  # None when unknown without loading (e.g. a user's folder)


def describe(name: str) -> DatasetInfo:
    """Registry facts about ``name`` (raises the registry's one-line error for unknown names)."""
    base, shift = shifts.parse(name)
    spec = get_dataset(base)
    pool = spec.expected_counts[0] if spec.expected_counts else None
    if shift is None:
        return DatasetInfo(name, base, spec.domain, None, None, pool)
    return DatasetInfo(name, base, shifts.SHIFT_DOMAIN, shift.name, shift.level, pool)


def load(
    name: str,
    image_size: int,
    data_dirs: list[Path],
    cache_dir: Path,
    allow_download: bool = True,
) -> LoadedDataset:
    """A dataset at ``image_size``; shifted variants are derived from their base's decoded arrays."""
    base, shift = shifts.parse(name)
    spec = get_dataset(base)
    if spec.modality == "text":  # ``image_size`` is the token budget there, applied by the text strategies
        if shift is not None:
            raise StudyError(f"dataset {name!r}: the shift ladder transforms images; text dataset {base!r} has none")
        return load_text_dataset(spec, data_dirs, allow_download=allow_download)
    ds = load_dataset(base, image_size, data_dirs, cache_dir, allow_download=allow_download)
    if shift is None:
        return ds
    checksum = _shifted(ds.source_checksum, shift.name)

    def moved(s: ImageSet) -> ImageSet:
        return ImageSet(shifts.apply(shift, s.images), s.labels, s.ids, s.groups)

    return replace(
        ds, name=name, domain=shifts.SHIFT_DOMAIN, pool=moved(ds.pool), test=moved(ds.test), source_checksum=checksum
    )


def _shifted(base_checksum: str, shift: str) -> str:
    return hashlib.sha256(f"{base_checksum}|{shift}|v{shifts.VERSION}".encode()).hexdigest()


def fingerprint(name: str, data_dirs: list[Path]) -> str | None:
    """The ``source_checksum`` that ``load(name, ...)`` would give (what a cell's provenance records as
    ``data_checksum``), from file listings and checksums only; None when the data is not on disk."""
    base, shift = shifts.parse(name)
    spec = get_dataset(base)
    if spec.modality == "text":
        from study.data.download import locate

        root = locate(spec, list(data_dirs))
        return None if root is None else text_fingerprint(spec, root)
    checksum = fingerprint_dataset(spec, data_dirs)
    if checksum is None or shift is None:
        return checksum
    return _shifted(checksum, shift.name)
