"""What one cell trains and is tested on: whole splits plus the indices this cell uses.

It lives with the data because every layer above reads it: the cache keys rows by these indices, strategies
train on them, probes measure them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from study.data.loaders import ImageSet, LoadedDataset
from study.data.sampling import cap_test, train_val_split
from study.errors import StudyError


@dataclass
class CellData:
    """One cell's images: whole splits plus the indices this cell uses (cache rows index the splits)."""

    dataset: str
    domain: str
    class_names: list[str]
    fingerprint: str  # content checksum of the dataset (and any transform): part of every cache key
    image_size: int
    pool: ImageSet
    test: ImageSet
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    # A domain-adaptation cell (``source_target_data``): this record is the *target* (train_idx/val_idx are its N_t
    # labelled images, possibly none; test_idx scores the cell), ``source`` the labelled source cell, and
    # ``unlabelled_idx`` the target's unlabelled training images (pool indices, disjoint from the labelled ones).
    source: CellData | None = None
    unlabelled_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def y_train(self) -> np.ndarray:
        return self.pool.labels[self.train_idx]

    @property
    def y_val(self) -> np.ndarray:
        return self.pool.labels[self.val_idx]

    @property
    def y_test(self) -> np.ndarray:
        return self.test.labels[self.test_idx]

    @property
    def y_select(self) -> np.ndarray:
        """Labels of the split that model selection reads (``FitResult.val_proba`` predicts it).

        The cell's validation split, or for a domain-adaptation cell the *source's* validation split: selection
        never reads target labels beyond the N_t the user has, and reads the same split for every pair strategy.
        """
        return self.source.y_val if self.source is not None else self.y_val


def check_pair(source: str, target: str) -> None:
    """A (source, target) pair must name two registered datasets with the same classes in the same order.

    One-line ``StudyError`` otherwise, before anything is loaded or trained. Shifted variants (``base@shift``) share
    their base's classes.
    """
    from study.data.catalog import describe
    from study.data.datasets import get_dataset

    if source == target:
        raise StudyError(f"pair [{source!r}, {target!r}]: source and target are the same dataset; name two domains")
    names = [tuple(get_dataset(describe(d).base).class_names) for d in (source, target)]
    if names[0] != names[1]:
        only_s, only_t = sorted(set(names[0]) - set(names[1])), sorted(set(names[1]) - set(names[0]))
        what = (
            f"classes only in {source}: {only_s[:5]}, only in {target}: {only_t[:5]}"
            if only_s or only_t
            else "the same classes in a different order"
        )
        raise StudyError(
            f"pair [{source!r}, {target!r}] has different class sets ({what}); domain adaptation needs one label space"
        )


def make_cell_data(ds: LoadedDataset, image_size: int, n_images: int, seed: int, max_test: int) -> CellData:
    """An ordinary cell's data: N stratified images (80/20 train/validation) and the fixed capped test subset."""
    train_idx, val_idx = train_val_split(ds.pool.labels, n_images, seed, dataset=ds.name, groups=ds.pool.groups)
    test_idx = cap_test(ds.test.labels, max_test, seed=0)
    return CellData(
        ds.name, ds.domain, list(ds.class_names), ds.source_checksum, image_size, ds.pool, ds.test,
        train_idx, val_idx, test_idx,
    )  # fmt: skip


def source_target_data(
    source: LoadedDataset, target: LoadedDataset, image_size: int, n_source: int, n_target_labels: int, seed: int,
    max_test: int, max_unlabelled: int | None = None,
) -> CellData:  # fmt: skip
    """A domain-adaptation cell: the target's cell with the source's nested in it.

    Source: ``n_source`` labelled images, split 80/20 into training and validation (the validation part is what
    model selection reads). Target: ``n_target_labels`` labelled images split the same way (none at 0), and the
    unlabelled images DANN sees: the rest of the target's *training pool*, drawn with the seed, at most
    ``max_unlabelled`` (default ``n_source``). The target's test split is only ever indexed by ``test_idx``. For a
    shift-ladder pair (the same photos transformed) the source's images are left out of the unlabelled ones.
    """
    check_pair(source.name, target.name)
    src = make_cell_data(source, image_size, n_source, seed, max_test)
    if n_target_labels > 0:
        train_idx, val_idx = train_val_split(
            target.pool.labels, n_target_labels, seed, dataset=target.name, groups=target.pool.groups
        )
    else:
        train_idx = val_idx = np.zeros(0, np.int64)
    taken = [train_idx, val_idx]
    if target.pool.ids == source.pool.ids:  # a shift-ladder pair: the same photos, so keep the source's out
        taken += [src.train_idx, src.val_idx]
    rest = np.setdiff1d(np.arange(len(target.pool.labels)), np.concatenate(taken))
    cap = n_source if max_unlabelled is None else max_unlabelled
    rng = np.random.default_rng([seed, 20])
    unlabelled = np.sort(rng.permutation(rest)[:cap]).astype(np.int64)
    return CellData(
        target.name, target.domain, list(target.class_names), target.source_checksum, image_size, target.pool,
        target.test, train_idx, val_idx, cap_test(target.test.labels, max_test, seed=0), source=src,
        unlabelled_idx=unlabelled,
    )  # fmt: skip
