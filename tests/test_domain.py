"""Domain similarity on the real data pack, and the controlled shift ladder."""

from __future__ import annotations

import numpy as np
import pytest

from study.cache.features import FeatureEngine
from study.config import WeightsDirs, cache_dir, keras_home
from study.data import shift
from study.data.catalog import describe, load
from study.errors import StudyError
from study.probes.domain import SAMPLE, measure, sample_features
from study.zoo.backbones import get_backbone

SIZE = 64


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("domain")
    return FeatureEngine(folder, WeightsDirs(keras_home(), folder))


@pytest.fixture(scope="module")
def loader(datapack):
    memo: dict = {}

    def get(name, size):
        if (name, size) not in memo:
            memo[(name, size)] = load(name, size, [datapack], cache_dir())
        return memo[(name, size)]

    return get


@pytest.fixture(scope="module")
def scores(engine, loader):
    # retinal fundus photos stand for the medical domain: RetinaMNIST decodes in a second, chest X-rays in minutes
    names = ["cifar10_subset", "retinamnist", "mnist", *shift.ladder("cats_and_dogs_filtered")]
    return {n: measure(loader(n, SIZE), "mobilenet_v2", SIZE, engine, loader) for n in names}


def test_natural_photos_are_closer_to_the_reference_than_fundus_photos_and_digits(scores):
    natural = scores["cifar10_subset"]["frechet_distance"]
    assert natural < scores["retinamnist"]["frechet_distance"]
    assert natural < scores["mnist"]["frechet_distance"]


def test_shift_ladder_levels_are_ordered_by_domain_gap(scores):
    gaps = [scores[n]["frechet_distance"] for n in shift.ladder("cats_and_dogs_filtered")]
    assert gaps == sorted(gaps), gaps


def test_scores_are_deterministic_and_computed_from_cached_features(scores, engine, loader):
    computed = engine.cache.stats.computed_rows
    again = measure(loader("mnist", SIZE), "mobilenet_v2", SIZE, engine, loader)
    for key in ("frechet_distance", "logme", "knn_accuracy", "linear_probe_accuracy"):
        assert again[key] == pytest.approx(scores["mnist"][key], rel=1e-9), key
    assert scores["mnist"]["n"] == SAMPLE
    assert engine.cache.stats.computed_rows == computed  # the second time nothing went through the backbone


def test_sample_is_stratified_and_fixed(engine, loader):
    ds = loader("retinamnist", SIZE)
    f1, y1 = sample_features(ds, get_backbone("mobilenet_v2"), SIZE, engine)
    share = np.bincount(y1) / len(y1)
    np.testing.assert_allclose(share, np.bincount(ds.pool.labels) / len(ds.pool), atol=0.01)


def test_ladder_keeps_labels_and_sizes_and_is_deterministic(loader):
    base = loader("cats_and_dogs_filtered", 32)
    for name in shift.ladder("cats_and_dogs_filtered")[1:]:
        moved = loader(name, 32)
        assert moved.pool.images.shape == base.pool.images.shape
        np.testing.assert_array_equal(moved.pool.labels, base.pool.labels)
        np.testing.assert_array_equal(moved.test.labels, base.test.labels)
        assert moved.source_checksum != base.source_checksum
        assert not np.array_equal(moved.pool.images[:8], base.pool.images[:8])
        np.testing.assert_array_equal(shift.apply(shift.parse(name)[1], base.pool.images[:8]), moved.pool.images[:8])
    info = describe("cats_and_dogs_filtered@permute")
    assert info.shift_level == 5 and info.base == "cats_and_dogs_filtered" and info.domain == "shifted"
    # pixel permutation keeps each image's histogram; tile shuffles keep every tile
    perm = loader("cats_and_dogs_filtered@permute", 32).pool.images[0]
    assert sorted(perm.reshape(-1).tolist()) == sorted(base.pool.images[0].reshape(-1).tolist())


def test_unknown_shift_is_a_clear_error():
    with pytest.raises(StudyError, match="unknown domain shift 'blur'.*permute"):
        describe("mnist@blur")


def test_grouped_datasets_give_their_probes_the_sample_groups(loader):
    """A grouped dataset's probes get one group id per sampled image (so their folds keep slides whole); an
    ungrouped one gets None (plain stratified folds)."""
    from study.probes.domain import _sample_index, sample_groups

    malaria = loader("malaria_cells", 32)
    groups = sample_groups(malaria)
    np.testing.assert_array_equal(groups, malaria.pool.groups[_sample_index(malaria)])
    assert len(groups) == min(SAMPLE, len(malaria.pool)) and 2 < len(np.unique(groups)) < len(groups)
    assert sample_groups(loader("mnist", 32)) is None
