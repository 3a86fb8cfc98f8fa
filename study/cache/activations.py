"""Activation cache: what a frozen part of a network computes is computed once, then read from disk.

A frozen prefix (a backbone up to a block boundary, possibly followed by global average pooling) maps an image
to the same activation every time, whatever the strategy, seed, training-set size or hyper-parameter trial.
So the study computes it once per (dataset content, split, image size, backbone weights, freeze point,
augmented view) and stores it as a memory-mapped ``.npy`` with one row per image of the split. Rows are
filled lazily: a cell that needs 50 images computes 50 rows; a later cell that needs 200 computes 150 more.

Layout: ``<cache_dir>/activations/<key>/{acts.npy, done.npy, meta.json}``; ``key`` is a sha256 over the
content checksums that determine the activations. ``done.npy`` marks which rows are valid. It is replaced
atomically (write + rename) only after the rows it names have been flushed, and updated under an exclusive
file lock, so a killed process or two concurrent workers can at worst recompute rows, never read garbage.

With augmentation on, view 0 is the original image and views 1..V-1 are fixed random augmentations
(seeded by view index), so "augmented" training on cached activations samples one of V stored views per
image per epoch; V is recorded in every result row.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# (uint8 images (n, s, s, 3), their row numbers in the split) -> float32 activations. Rows let augmented
# views be seeded per image, so a row's value never depends on how the rows were batched.
ExtractFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def cache_key(**parts: object) -> str:
    """Stable key from the content checksums and settings that determine the activations."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


@dataclass
class CacheStats:
    """Counts a test or benchmark can assert on: rows computed versus rows served from disk."""

    computed_rows: int = 0
    hit_rows: int = 0
    extract_seconds: float = 0.0
    keys: set[str] = field(default_factory=set)


class ActivationCache:
    """Lazily filled, disk-backed activations for the rows of one image split."""

    def __init__(self, root: Path, batch_size: int = 64) -> None:
        self.root = Path(root) / "activations"
        self.batch_size = batch_size
        self.stats = CacheStats()

    def get(
        self,
        key: str,
        images: np.ndarray,
        indices: np.ndarray,
        extract: ExtractFn | Callable[[], ExtractFn],
        lazy_extract: bool = False,
        meta: dict | None = None,
    ) -> np.ndarray:
        """Activations for ``images[indices]`` (an in-memory float32 array), computing missing rows only.

        ``images`` is the whole split (rows are indexed against it); ``extract`` maps a uint8 batch and its
        row numbers to activations. With ``lazy_extract`` it is a factory called only on a miss, so a full hit
        never even builds the network.
        """
        indices = np.asarray(indices, dtype=np.int64)
        folder = self.root / key
        folder.mkdir(parents=True, exist_ok=True)
        self.stats.keys.add(key)
        with _locked(folder / "lock"):
            done = _load_done(folder, len(images))
            missing = np.unique(indices[~done[indices]])
            if missing.size:
                fn = extract() if lazy_extract else extract  # type: ignore[operator]
                t0 = time.perf_counter()
                first = fn(images[missing[: self.batch_size]], missing[: self.batch_size])
                acts = _open_acts(folder, len(images), first.shape[1:], meta)
                acts[missing[: len(first)]] = first
                for start in range(self.batch_size, missing.size, self.batch_size):
                    rows = missing[start : start + self.batch_size]
                    acts[rows] = fn(images[rows], rows)
                acts.flush()
                del acts
                done[missing] = True
                _save_done(folder, done)
                self.stats.extract_seconds += time.perf_counter() - t0
                self.stats.computed_rows += int(missing.size)
            self.stats.hit_rows += int(indices.size - missing.size)
            acts = np.load(folder / "acts.npy", mmap_mode="r")
            return np.array(acts[indices], dtype=np.float32)


def _load_done(folder: Path, n: int) -> np.ndarray:
    path = folder / "done.npy"
    if path.exists() and (folder / "acts.npy").exists():
        done = np.load(path)
        if done.shape == (n,):
            return done
    return np.zeros(n, dtype=bool)


def _save_done(folder: Path, done: np.ndarray) -> None:
    tmp = folder / f"done.{os.getpid()}.tmp.npy"
    np.save(tmp, done)
    os.replace(tmp, folder / "done.npy")


def _open_acts(folder: Path, n: int, shape: tuple[int, ...], meta: dict | None) -> np.memmap:
    path = folder / "acts.npy"
    if path.exists():
        acts = np.load(path, mmap_mode="r+")
        if acts.shape == (n, *shape):
            return acts
    tmp = folder / f"acts.{os.getpid()}.tmp.npy"
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, *shape))
    del arr
    os.replace(tmp, path)
    (folder / "meta.json").write_text(json.dumps({**(meta or {}), "shape": [n, *shape]}, default=str))
    with contextlib.suppress(FileNotFoundError):
        (folder / "done.npy").unlink()
    return np.load(path, mmap_mode="r+")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
