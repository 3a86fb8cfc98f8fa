"""Deterministic, stratified, nested subsets: "the user has N images" made reproducible.

Why the care: results are compared across training-set sizes, seeds and strategies, so the subset for
(dataset, N, seed) must be the same on every machine, keep each class's share of the pool (within one image
of exact), include every class at least once, and grow by adding images (the N=200 subset for a seed
contains the N=50 one), so a learning curve measures more data, not different data.

How: per-class counts for every N come from a sequential, quota-respecting allocation (each class gets the
floor or ceiling of its exact share, like largest-remainder rounding, but computed one image at a time so a
class's count never drops as N grows: no Alabama paradox). The images taken from a class are a prefix of a
permutation seeded by (seed, class), so larger N adds images and never swaps them.

Groups (patients, slides, tracks of one object: ``DatasetSpec.group_pattern``) make both the fixed test split
and the train/validation carving leakage-safe: whole groups are held out, chosen greedily in a seeded order so
that each class's held-out share comes as close to the fraction as the group sizes allow, and every class spread
over two or more groups keeps at least one group on each side. The N images are then drawn per class exactly as
without groups (same per-class counts), from two fixed queues, the class's images in validation groups and in
training groups, each visiting its groups round-robin (one image per group per round, so a small N spans many
groups rather than a few): still deterministic, stratified and nested. Without groups nothing changes.
"""

from __future__ import annotations

import threading
from array import array
from functools import lru_cache
from math import ceil

import numpy as np

from study.errors import StudyError


def _for(dataset: str | None) -> str:
    return f" for dataset {dataset!r}" if dataset else ""


def _as_labels(labels: np.ndarray | list[int]) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0):
        raise StudyError("labels must be non-negative integers (class indices)")
    return arr.astype(np.int64, copy=False)


class _Sequence:
    """Incremental quota-method allocation for one (counts, min_per_class): extended on demand, cached.

    Stores only the class picked at each step (a small int array), so even a 190k-image pool costs ~1 MB.
    """

    def __init__(self, counts: tuple[int, ...], min_per_class: int) -> None:
        self.counts = counts
        self.total = sum(counts)
        self.initial = [min(min_per_class, c) for c in counts]
        self.a = list(self.initial)
        self.start = sum(self.a)
        self.picks = array("H" if len(counts) < 65536 else "I")
        self.lock = threading.Lock()

    def at(self, n: int) -> tuple[int, ...]:
        with self.lock:
            self._extend(n)
            steps = np.frombuffer(self.picks, dtype=self.picks.typecode)[: n - self.start]
            extra = np.bincount(steps, minlength=len(self.counts))
        return tuple(int(i + e) for i, e in zip(self.initial, extra, strict=True))

    def _extend(self, n: int) -> None:
        counts, total, a = self.counts, self.total, self.a
        h = self.start + len(self.picks)
        while h < n:
            h += 1
            best, best_key = -1, (-1.0, -1.0)
            for k, c in enumerate(counts):
                if a[k] >= c:
                    continue
                exact = h * c / total
                key = (1.0, c / (a[k] + 1)) if a[k] + 1 <= ceil(exact - 1e-9) else (0.0, exact - a[k])
                if key > best_key:
                    best, best_key = k, key
            a[best] += 1
            self.picks.append(best)


@lru_cache(maxsize=64)
def _sequence(counts: tuple[int, ...], min_per_class: int) -> _Sequence:
    return _Sequence(counts, min_per_class)


def _allocation(counts: tuple[int, ...], n: int, min_per_class: int) -> tuple[int, ...]:
    """Per-class counts for a subset of size ``n``, house-monotone in ``n`` for fixed counts/min.

    First every class gets ``min(min_per_class, count)``; then images are added one at a time to the class
    most behind its share (Jefferson priority ``count/(a+1)``) among classes that would not exceed the
    ceiling of their exact share at the new size (Balinski-Young's quota method), falling back to the
    largest deficit when none is eligible (only after the minimums pushed small classes over quota).
    """
    return _sequence(counts, min_per_class).at(n)


def _class_perm(idx: np.ndarray, seed: int, cls: int) -> np.ndarray:
    """A permutation of one class's indices that depends only on (seed, class): the basis of nesting."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(cls)])
    return idx[rng.permutation(idx.size)]


def _stratified(
    labels: np.ndarray, n: int, seed: int, min_per_class: int, dataset: str | None, what: str
) -> np.ndarray:
    classes, counts = np.unique(labels, return_counts=True)
    total = int(labels.size)
    if n > total:
        raise StudyError(
            f"{what}={n} is larger than the {total} images available{_for(dataset)}; the maximum is {total}"
        )
    minimum = int(sum(min(min_per_class, c) for c in counts))
    if n < minimum:
        raise StudyError(
            f"{what}={n} is too small{_for(dataset)}: {len(classes)} classes need at least {minimum} images "
            f"({min_per_class} per class); the minimum is {minimum}"
        )
    alloc = _allocation(tuple(int(c) for c in counts), int(n), min_per_class)
    chosen = [
        _class_perm(np.flatnonzero(labels == cls), seed, int(cls))[:k]
        for cls, k in zip(classes, alloc, strict=True)
        if k
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def stratified_subset(labels: np.ndarray | list[int], n: int, seed: int, *, dataset: str | None = None) -> np.ndarray:
    """Sorted indices of a stratified subset of ``n`` items: every class present, shares within ±1 of exact.

    Deterministic for (labels, n, seed) and nested in ``n`` for a fixed seed.
    """
    arr = _as_labels(labels)
    return _stratified(arr, int(n), seed, 1, dataset, "n")


def train_val_split(
    pool_labels: np.ndarray | list[int],
    n_images: int,
    seed: int,
    val_fraction: float = 0.2,
    *,
    dataset: str | None = None,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the pool of the user's ``n_images``, split into (train, validation), both stratified.

    The N images are drawn first (nested in N for a seed, at least two per class), then the validation part
    is carved from those N only, about ``val_fraction`` of each class with at least one image per class in
    each part, so "N images" means N labelled images in total, as a user would count them. For a fixed seed
    both the training and the validation set of a smaller N are contained in those of a larger N.

    With ``groups`` (one id per pool image) no group has images on both sides; the per-class counts are the
    same, the per-class validation share is kept as far as the groups allow (a class whose groups all sit on one
    side has no image on the other).
    """
    labels = _as_labels(pool_labels)
    if not 0.0 < val_fraction < 1.0:
        raise StudyError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    classes, counts = np.unique(labels, return_counts=True)
    k = len(classes)
    short = [int(c) for c, m in zip(classes, counts, strict=True) if m < 2]
    if short:
        raise StudyError(
            f"classes {short} have fewer than 2 images in the pool{_for(dataset)}; each class needs one training "
            "and one validation image"
        )
    if n_images > labels.size:
        raise StudyError(
            f"n_images={n_images} is larger than the pool of {labels.size} images{_for(dataset)}; "
            f"the maximum is {labels.size}"
        )
    if n_images < 2 * k:
        raise StudyError(
            f"n_images={n_images} is too small{_for(dataset)}: {k} classes need one training and one validation "
            f"image each; the minimum is {2 * k}"
        )
    alloc = _allocation(tuple(int(c) for c in counts), int(n_images), 2)
    if groups is not None:
        return _grouped_train_val(labels, _group_ids(groups, labels.size, dataset or "the pool"), classes, alloc,
                                  seed, val_fraction)  # fmt: skip
    train_parts, val_parts = [], []
    for cls, a in zip(classes, alloc, strict=True):
        taken = _class_perm(np.flatnonzero(labels == cls), seed, int(cls))[:a]
        is_val = _val_positions(a, val_fraction)
        val_parts.append(taken[is_val])
        train_parts.append(taken[~is_val])
    train_idx, val_idx = np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(val_parts))
    return train_idx.astype(np.int64), val_idx.astype(np.int64)


_TEST_SALT = 0x7465  # seeds of the group hold-outs and orders: apart from the per-class permutations' streams
_VAL_SALT = 0x76616C
_RANK_SALT = 0x72616E


def _group_ids(groups: np.ndarray | list, n: int, what: str) -> np.ndarray:
    """Group labels (any hashable values) as dense ints 0..G-1 in sorted order of the labels."""
    arr = np.asarray(groups)
    if arr.ndim != 1 or arr.size != n:
        raise StudyError(f"groups for {what} must be one id per image ({n}), got shape {arr.shape}")
    uniq, gid = np.unique(arr, return_inverse=True)
    if uniq.size < 2:
        raise StudyError(f"{what} has a single group; a split by groups needs at least two")
    return gid.astype(np.int64)


def _hold_out_groups(labels: np.ndarray, gid: np.ndarray, fraction: float, seed: int, salt: int) -> np.ndarray:
    """Which groups to hold out (bool per group): about ``fraction`` of each class, whole groups only.

    Groups are visited in a seeded order and held out when that brings the per-class held-out counts closer
    (in total absolute deviation) to ``fraction`` of each class. Afterwards a class spread over several groups
    that ended with none held out gets its smallest group held out, and one with all held out gets its smallest
    group back, so every such class has images on both sides.
    """
    _, lab = np.unique(labels, return_inverse=True)
    n_groups, n_classes = int(gid.max()) + 1, int(lab.max()) + 1
    table = np.zeros((n_groups, n_classes), dtype=np.int64)
    np.add.at(table, (gid, lab), 1)
    target = fraction * table.sum(axis=0)
    held = np.zeros(n_classes, dtype=np.int64)
    out = np.zeros(n_groups, dtype=bool)
    order = np.random.default_rng([int(seed) & 0xFFFFFFFF, salt]).permutation(n_groups)
    for g in order:
        row = table[g]
        if np.abs(held + row - target).sum() < np.abs(held - target).sum():
            out[g] = True
            held += row
    for k in range(n_classes):
        members = [int(g) for g in order if table[g, k] > 0]
        if len(members) < 2:
            continue
        side = None if 0 < held[k] < table[:, k].sum() else bool(held[k] == 0)  # True: hold one out
        if side is None:
            continue
        g = min((g for g in members if out[g] != side), key=lambda g: int(table[g].sum()))
        out[g] = side
        held += table[g] if side else -table[g]
    return out


def _round_robin(idx: np.ndarray, gid: np.ndarray, rank: np.ndarray, seed: int, cls: int) -> np.ndarray:
    """One class's images in draw order: the first image of each group (groups in ``rank`` order), then the
    second of each, ...; within a group the order is the class's seeded permutation."""
    perm = _class_perm(idx, seed, cls)
    g = gid[perm]
    occurrence = np.zeros(perm.size, dtype=np.int64)
    seen: dict[int, int] = {}
    for i, x in enumerate(g.tolist()):
        occurrence[i] = seen.get(x, 0)
        seen[x] = occurrence[i] + 1
    return perm[np.lexsort((rank[g], occurrence))]


def _grouped_train_val(
    labels: np.ndarray, gid: np.ndarray, classes: np.ndarray, alloc: tuple[int, ...], seed: int, val_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """``train_val_split`` with groups: validation groups fixed per seed, per-class draws from two queues."""
    val_group = _hold_out_groups(labels, gid, val_fraction, seed, _VAL_SALT)
    rank = np.random.default_rng([int(seed) & 0xFFFFFFFF, _RANK_SALT]).permutation(int(gid.max()) + 1)
    train_parts, val_parts = [], []
    for cls, a in zip(classes, alloc, strict=True):
        order = _round_robin(np.flatnonzero(labels == cls), gid, rank, seed, int(cls))
        is_val = val_group[gid[order]]
        queues = (order[~is_val], order[is_val])
        taken: tuple[list[int], list[int]] = ([], [])
        for want_val in _val_positions(a, val_fraction).tolist():
            side = int(want_val) if len(taken[int(want_val)]) < len(queues[int(want_val)]) else 1 - int(want_val)
            taken[side].append(int(queues[side][len(taken[side])]))
        train_parts.append(np.asarray(taken[0], dtype=np.int64))
        val_parts.append(np.asarray(taken[1], dtype=np.int64))
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(val_parts))


def _val_positions(a: int, val_fraction: float) -> np.ndarray:
    """Which of a class's first ``a`` drawn images are validation: a fixed pattern over draw positions.

    The number of validation images among the first ``m`` is ``V(m) = min(m-1, max(1, round(m*f)))``
    (``V(1) = 1``): at least one validation and one training image, about ``f`` of them validation, and
    non-decreasing in ``m`` by steps of 0 or 1, so position ``j`` is validation iff ``V(j+1) > V(j)``. Because
    the pattern depends only on position, both the training and the validation sets are nested in N.
    """
    m = np.arange(1, a + 1)
    v = np.minimum(m - 1, np.maximum(1, np.floor(m * val_fraction + 0.5))).astype(np.int64)
    v[0] = 1
    prev = np.concatenate([[0], v[:-1]])
    return v > prev


def fixed_test_split(
    labels: np.ndarray | list[int], test_fraction: float, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) sorted indices: a stratified ``test_fraction`` hold-out for datasets with no test split.

    With ``groups`` (one group id per item) whole groups are held out (see the module docstring), so the test
    size is only about ``test_fraction``; without, the split is exactly what it has always been.
    """
    arr = _as_labels(labels)
    if not 0.0 < test_fraction < 1.0:
        raise StudyError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if groups is not None:
        gid = _group_ids(groups, arr.size, "the test split")
        held = _hold_out_groups(arr, gid, test_fraction, seed, _TEST_SALT)[gid]
        return np.flatnonzero(~held).astype(np.int64), np.flatnonzero(held).astype(np.int64)
    n_classes = len(np.unique(arr))
    n_test = min(max(n_classes, round(test_fraction * arr.size)), arr.size)
    test_idx = _stratified(arr, n_test, seed, 1, None, "test size")
    pool_idx = np.setdiff1d(np.arange(arr.size), test_idx, assume_unique=True)
    return pool_idx.astype(np.int64), test_idx


def cap_test(labels: np.ndarray | list[int], max_n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a fixed stratified subset of at most ``max_n`` test items (all when it fits).

    Evaluating on a capped but fixed test subset keeps big test sets (tissuemnist: 47k) affordable while
    every strategy and backbone is still scored on the same images.
    """
    arr = _as_labels(labels)
    if max_n is None or max_n >= arr.size:
        return np.arange(arr.size, dtype=np.int64)
    n_classes = len(np.unique(arr))
    if max_n < n_classes:
        raise StudyError(f"max test size {max_n} is smaller than the {n_classes} classes; use at least {n_classes}")
    return _stratified(arr, int(max_n), seed, 1, None, "max test size")


def class_balance(labels: np.ndarray | list[int], n_classes: int) -> dict[str, object]:
    """Counts, proportions and the majority share (the accuracy of always guessing the biggest class).

    Recorded with every result so an accuracy on an imbalanced test set is read against its floor.
    """
    arr = _as_labels(labels)
    counts = np.bincount(arr, minlength=n_classes)[:n_classes] if arr.size else np.zeros(n_classes, np.int64)
    total = int(counts.sum())
    props = (counts / total) if total else np.zeros(n_classes)
    return {
        "n": total,
        "counts": [int(c) for c in counts],
        "proportions": [float(p) for p in props],
        "majority_share": float(props.max()) if total else 0.0,
    }
