"""Is a user's image folder usable for the study? Checked once, before anything trains.

A folder registered by a grid file (``[datasets.NAME] path = ...``) or a plugin is read by the same loader as
every cell (``load_dataset``), so everything a cell would trip over is found here first, as one line naming the
folder and the fix: no class folders, an empty class, a non-image file, too many unreadable images (a handful
are skipped: ``readers.UNREADABLE_SKIP_MAX``), a single class, a class too small to split, or fewer images than
a requested training-set size. The decode is not wasted: it fills the decoded cache that the cells then read.

The advisor's ``train``/``recommend`` can call ``check_loaded`` on the folder it loaded for the same messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from study.data.datasets import DatasetSpec, get_dataset
from study.data.loaders import LoadedDataset, load_dataset
from study.errors import StudyError


def is_user_folder(spec: DatasetSpec) -> bool:
    """A folder the user pointed at (grid file, plugin, advisor), as opposed to a built-in, counted dataset."""
    return spec.root is not None


def check_loaded(ds: LoadedDataset, sizes: Iterable[int] = ()) -> None:
    """Raise a one-line StudyError when ``ds`` cannot give a classifier, or any of ``sizes`` training images."""
    where = ds.spec.root if ds.spec is not None and ds.spec.root is not None else ds.name
    if ds.n_classes < 2:
        found = f"one class folder ({ds.class_names[0]})" if ds.class_names else "no class folders"
        raise StudyError(
            f"dataset {ds.name!r}: {where} has {found}; a classifier needs at least two: add one sub-folder of "
            "images per class"
        )
    counts = np.bincount(ds.pool.labels, minlength=ds.n_classes)
    short = [(ds.class_names[i], int(n)) for i, n in enumerate(counts) if n < 2]
    if short:
        listed = ", ".join(f"{c} ({n})" for c, n in short)
        raise StudyError(
            f"dataset {ds.name!r}: classes with fewer than 2 images to train from after the test split: {listed}; "
            f"each needs one training and one validation image: add images to those folders in {where}"
        )
    pool, k = len(ds.pool), ds.n_classes
    for n in sorted(set(sizes)):
        if n > pool:
            raise StudyError(
                f"dataset {ds.name!r} has {pool} images to train from in {where} ({len(ds.test)} more are held out "
                f"for testing), fewer than the requested size {n}; add images or request sizes up to {pool}"
            )
        if n < 2 * k:
            raise StudyError(
                f"size {n} is too small for dataset {ds.name!r}: its {k} classes need one training and one "
                f"validation image each; request sizes of at least {2 * k}"
            )


def check_folder(
    name: str,
    image_size: int,
    sizes: Iterable[int],
    data_dirs: list[Path],
    cache_dir: Path,
) -> LoadedDataset:
    """Load a registered folder at ``image_size`` (filling the decoded cache) and ``check_loaded`` it."""
    if get_dataset(name).modality == "text":
        from study.data.catalog import load

        ds = load(name, image_size, data_dirs, cache_dir, allow_download=False)
    else:
        ds = load_dataset(name, image_size, data_dirs, cache_dir, allow_download=False)
    check_loaded(ds, sizes)
    return ds


def check_folders(
    needs: Mapping[tuple[str, int], Iterable[int]], data_dirs: list[Path], cache_dir: Path
) -> list[str]:
    """Check every user folder among ``needs`` ((dataset, image size) -> training-set sizes) before a sweep.

    Built-in datasets are skipped (their counts are known and verified on load). Returns one warning per
    folder whose unreadable images are skipped; raises the first problem as a one-line StudyError.
    """
    warnings: list[str] = []
    for (name, image_size), sizes in sorted(needs.items()):
        if not is_user_folder(get_dataset(name)):
            continue
        ds = check_folder(name, image_size, sizes, data_dirs, cache_dir)
        if ds.skipped:
            shown = ", ".join(ds.skipped[:3]) + (" ..." if len(ds.skipped) > 3 else "")
            message = (
                f"dataset {name!r}: {len(ds.skipped)} unreadable images skipped ({shown}); delete or replace them "
                "to use them"
            )
            if message not in warnings:
                warnings.append(message)
    return warnings
