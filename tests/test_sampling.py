"""Subsets must be stratified (within one image of exact shares), reproducible, nested in N, and refuse
impossible sizes with a message that says the allowed range."""

from __future__ import annotations

import numpy as np
import pytest

from study.data.sampling import (
    cap_test,
    class_balance,
    fixed_test_split,
    stratified_subset,
    train_val_split,
)
from study.errors import StudyError

# The chest X-ray pool (imbalanced 1341/3875) and RetinaMNIST's pool (train+val per class, from SOURCE.txt).
CHEST = np.repeat([0, 1], [1341, 3875])
RETINA = np.repeat(np.arange(5), [486 + 54, 128 + 12, 206 + 28, 194 + 20, 66 + 6])
BALANCED = np.repeat(np.arange(10), 800)


def _shares_ok(labels: np.ndarray, idx: np.ndarray) -> None:
    classes, counts = np.unique(labels, return_counts=True)
    got = np.bincount(labels[idx], minlength=classes.max() + 1)[classes]
    exact = len(idx) * counts / counts.sum()
    assert np.all(np.abs(got - exact) < 1 + 1e-9), (got, exact)
    assert np.all(got >= 1)


@pytest.mark.parametrize("labels", [CHEST, RETINA, BALANCED], ids=["chest", "retina", "balanced"])
@pytest.mark.parametrize("n", [20, 50, 137, 500, 1000])
def test_subset_is_stratified_within_one(labels: np.ndarray, n: int) -> None:
    idx = stratified_subset(labels, n, seed=3)
    assert len(idx) == n and len(np.unique(idx)) == n
    assert np.all(np.diff(idx) > 0), "indices come back sorted"
    _shares_ok(labels, idx)


def test_subset_is_reproducible_and_seed_dependent() -> None:
    a = stratified_subset(RETINA, 100, seed=0)
    assert np.array_equal(a, stratified_subset(RETINA, 100, seed=0))
    assert np.array_equal(a, stratified_subset(list(RETINA), 100, seed=0)), "lists work like arrays"
    assert not np.array_equal(a, stratified_subset(RETINA, 100, seed=1))


def test_subsets_are_nested_in_n() -> None:
    for seed in range(3):
        prev: set[int] = set()
        for n in (5, 10, 25, 50, 100, 200, 400, 1200):
            cur = set(stratified_subset(RETINA, n, seed).tolist())
            assert prev <= cur, f"n={n} seed={seed} dropped images of a smaller subset"
            prev = cur


def test_nesting_and_quota_hold_for_random_class_counts() -> None:
    """Property check: house-monotone allocation never drops a class's count and stays within quota."""
    rng = np.random.default_rng(0)
    for _ in range(25):
        k = int(rng.integers(2, 9))
        counts = rng.integers(5, 120, size=k)
        labels = rng.permutation(np.repeat(np.arange(k), counts))
        prev = np.zeros(0, dtype=np.int64)
        for n in range(k * 5, len(labels) + 1, 7):
            idx = stratified_subset(labels, n, seed=11)
            assert np.isin(prev, idx).all()
            if np.all(n * counts / counts.sum() >= 1):
                _shares_ok(labels, idx)
            prev = idx


def test_every_class_appears_even_when_rare() -> None:
    labels = np.repeat([0, 1, 2], [990, 5, 5])
    idx = stratified_subset(labels, 10, seed=0)
    assert set(labels[idx]) == {0, 1, 2}


def test_subset_size_errors_name_the_limit() -> None:
    with pytest.raises(StudyError, match=r"maximum is 1200"):
        stratified_subset(RETINA, 1201, seed=0, dataset="retinamnist")
    with pytest.raises(StudyError, match=r"minimum is 5"):
        stratified_subset(RETINA, 4, seed=0)
    with pytest.raises(StudyError, match="non-negative integers"):
        stratified_subset(np.array([-1, 0, 1]), 2, seed=0)


@pytest.mark.parametrize("n", [10, 40, 200, 1000])
def test_train_val_split_carves_validation_from_the_n_images(n: int) -> None:
    train, val = train_val_split(RETINA, n, seed=5, val_fraction=0.2)
    assert len(train) + len(val) == n
    assert not set(train) & set(val)
    for part in (train, val):
        assert set(RETINA[part]) == set(range(5)), "every class in train and in validation"
    assert abs(len(val) - 0.2 * n) <= 5 / 2 + 1, "about val_fraction of the N images validate"
    taken = np.bincount(RETINA[np.concatenate([train, val])], minlength=5)
    per_class_val = np.bincount(RETINA[val], minlength=5)
    assert np.all(np.abs(per_class_val - 0.2 * taken) <= 1), "each class keeps ~val_fraction for validation"
    if n >= 40:  # below that the two-per-class minimum outweighs the smallest class's share
        _shares_ok(RETINA, np.sort(np.concatenate([train, val])))


def test_train_val_split_is_reproducible_and_nested_in_n() -> None:
    a = train_val_split(CHEST, 100, seed=2)
    b = train_val_split(CHEST, 100, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], train_val_split(CHEST, 100, seed=3)[0])
    for labels in (CHEST, RETINA):
        prev_train, prev_val = set(), set()
        for n in (10, 20, 50, 120, 200, 500, 1000):
            train, val = (set(x.tolist()) for x in train_val_split(labels, n, seed=2))
            assert prev_train <= train and prev_val <= val, f"n={n}: a larger N keeps the smaller N's split"
            prev_train, prev_val = train, val


def test_train_val_split_errors() -> None:
    with pytest.raises(
        StudyError, match=r"larger than the pool of 1200 images for dataset 'retinamnist'.*maximum is 1200"
    ):
        train_val_split(RETINA, 5000, seed=0, dataset="retinamnist")
    with pytest.raises(StudyError, match=r"too small for dataset 'retinamnist'.*minimum is 10"):
        train_val_split(RETINA, 9, seed=0, dataset="retinamnist")
    with pytest.raises(StudyError, match="fewer than 2 images"):
        train_val_split(np.array([0, 0, 0, 1]), 4, seed=0)
    with pytest.raises(StudyError, match="val_fraction"):
        train_val_split(RETINA, 100, seed=0, val_fraction=1.5)
    train, val = train_val_split(RETINA, 10, seed=0)  # the minimum works: one of each per class
    assert len(train) == 5 and len(val) == 5
    train, val = train_val_split(RETINA, 50, seed=0, val_fraction=0.9)  # extreme fractions keep one train each
    assert set(RETINA[train]) == set(range(5))


def test_fixed_test_split_is_stratified_and_fixed() -> None:
    labels = np.repeat(np.arange(7), 400)  # RSSCN7
    pool, test = fixed_test_split(labels, 0.2, seed=0)
    assert (len(pool), len(test)) == (2240, 560)
    assert not set(pool) & set(test) and len(set(pool) | set(test)) == 2800
    assert np.all(np.bincount(labels[test]) == 80)
    again = fixed_test_split(labels, 0.2, seed=0)
    assert np.array_equal(test, again[1])
    with pytest.raises(StudyError):
        fixed_test_split(labels, 0.0, seed=0)


def test_cap_test() -> None:
    assert np.array_equal(cap_test(RETINA, None), np.arange(1200))
    assert np.array_equal(cap_test(RETINA, 5000), np.arange(1200))
    idx = cap_test(CHEST, 500)
    assert len(idx) == 500
    _shares_ok(CHEST, idx)
    assert np.array_equal(idx, cap_test(CHEST, 500)), "default seed is fixed"
    with pytest.raises(StudyError, match="at least 5"):
        cap_test(RETINA, 3)


def test_class_balance() -> None:
    bal = class_balance(CHEST, 2)
    assert bal["counts"] == [1341, 3875] and bal["n"] == 5216
    assert bal["majority_share"] == pytest.approx(3875 / 5216)
    assert sum(bal["proportions"]) == pytest.approx(1.0)
    assert class_balance(np.array([0, 0]), 3)["counts"] == [2, 0, 0], "absent classes count as zero"
    assert class_balance(np.array([], dtype=np.int64), 2)["majority_share"] == 0.0
