"""What one cell trains and is tested on: whole splits plus the indices this cell uses.

It lives with the data because every layer above reads it: the cache keys rows by these indices, strategies
train on them, probes measure them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from study.data.loaders import ImageSet


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
