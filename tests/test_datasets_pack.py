"""The data pack's second batch: each dataset loads with the counts and classes its SOURCE.txt states, the grouped
ones (patients' MRI blocks, malaria slides, GTSRB tracks) never put a group on both sides of the test split or of
a cell's train/validation carving, the domain-adaptation families share their label space, and a tiny cell runs
on one dataset of each layout (32 px, linear probe on MobileNetV2: seconds each). Every dataset is loaded once, at
32 px (the decoded cache's smallest size), and shared by the tests that read it."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from study import config
from study.data.datasets import (
    DATAPACK_DATASETS,
    DOMAINS,
    PACK_FOLDERS,
    get_dataset,
    label_space_members,
    list_datasets,
)
from study.data.loaders import load_dataset
from study.data.sampling import train_val_split
from study.errors import StudyError

SIZE = 32

# name -> (pool, test, per-class totals of pool + test as SOURCE.txt lists them: an int when every class has it).
# Pool/test for a fixed 20 % hold-out follow from the totals; for the grouped ones they are whatever whole groups
# give (recorded, then checked to stay put: a changed split would silently change every result).
NEW = {
    "eurosat_rgb": (2400, 600, 300),
    "uc_merced_landuse": (672, 168, 40),
    "brain_tumor_mri_figshare": (1196, 304, 500),
    "malaria_cells": (946, 254, 600),
    "caltech101": (1293, 323, 16),
    "clothing_small": (1199, 372, [94 + 15, 48 + 12, 178 + 72, 72 + 38, 183 + 42, 113 + 26, 77 + 73, 79 + 30,
                                   44 + 12, 311 + 52]),  # fmt: skip
    "sign_language_digits": (1650, 412, [205, 206, 206, 206, 207, 207, 207, 206, 208, 204]),
    "gtsrb": (2580, 1075, 85),
    "synsigns": (1586, 396, [46, 45, 48, 50, 49, 45, 46, 55, 57, 49, 48, 55, 48, 33, 41, 42, 37, 40, 54, 44, 47, 44,
                             54, 48, 44, 49, 48, 34, 46, 57, 50, 39, 40, 50, 49, 51, 31, 43, 52, 29, 53, 44,
                             48]),  # fmt: skip
    "mnist_m": (2000, 1000, 300),
    "pacs_photo": (280, 70, 50),
    "pacs_art_painting": (280, 70, 50),
    "pacs_cartoon": (280, 70, 50),
    "pacs_sketch": (280, 70, 50),
    "office31_amazon": (372, 93, 15),
    "office31_dslr": (398, 100, [12, 21, 24, 12, 16, 12, 13, 14, 15, 15, 13, 10, 24, 16, 31, 22, 12, 8, 10, 10, 13, 15,
                                 23, 18, 10, 7, 18, 26, 21, 22, 15]),  # fmt: skip
    "office31_webcam": (636, 159, [29, 21, 28, 12, 16, 31, 40, 18, 21, 19, 27, 27, 30, 19, 30, 43, 30, 27, 28, 32, 16,
                                   20, 30, 27, 40, 11, 25, 30, 24, 23, 21]),  # fmt: skip
    "neu_surface_defects": (720, 180, 150),
    "plantvillage_tomato": (640, 160, 80),
    "fsdd_spectrogram": (1500, 300, 180),
}
N_CLASSES = {"caltech101": 101, "gtsrb": 43, "synsigns": 43, "uc_merced_landuse": 21, "brain_tumor_mri_figshare": 3,
             "malaria_cells": 2, "neu_surface_defects": 6, "pacs": 7, "office31": 31}  # fmt: skip
GROUPED = ("brain_tumor_mri_figshare", "malaria_cells", "gtsrb")


def _n_classes(name: str) -> int:
    return N_CLASSES.get(name, N_CLASSES.get(name.split("_")[0], 10))


@cache
def _load(name: str):
    """One load per dataset per session (scanning a folder and reading its decoded cache are the slow parts)."""
    return load_dataset(name, SIZE, config.data_dirs(), config.cache_dir())


# ------------------------------------------------------------------------------------------------------ registry


def test_every_pack_folder_is_a_dataset_with_taxonomy_source_and_licence(datapack: Path) -> None:
    assert set(NEW) == set(DATAPACK_DATASETS[6:]) and len(PACK_FOLDERS) == 21
    assert sorted(p.name for p in datapack.iterdir() if (p / "SOURCE.txt").is_file()) == sorted(PACK_FOLDERS)
    for name in NEW:
        spec = get_dataset(name)
        assert spec.domain in DOMAINS, name
        assert spec.is_present(datapack / spec.folder), name
        assert spec.homepage.startswith("http") and spec.citation and spec.license, name
        assert spec.downloads or "compact re-encoded copy with no download" in spec.checksum_note, name
        assert len(spec.class_names) == _n_classes(name), name
    assert len({get_dataset(n).domain for n in NEW}) == len(DOMAINS), "every label of the taxonomy is used"


def test_domain_adaptation_families_share_one_label_space() -> None:
    assert label_space_members("pacs") == ["pacs_art_painting", "pacs_cartoon", "pacs_photo", "pacs_sketch"]
    assert label_space_members("office31") == ["office31_amazon", "office31_dslr", "office31_webcam"]
    assert label_space_members("gtsrb43") == ["gtsrb", "synsigns"]
    assert label_space_members("mnist") == ["mnist", "mnist_full", "mnist_m"]
    for family in ("pacs", "office31", "gtsrb43", "mnist"):
        assert len({get_dataset(n).class_names for n in label_space_members(family)}) == 1, family
    assert list_datasets("art") == ["pacs_art_painting", "pacs_cartoon", "pacs_sketch"]


def test_eurosat_is_one_record_for_the_pack_copy_and_the_official_download() -> None:
    spec = get_dataset("eurosat_rgb")
    assert spec.expected_counts == (2400, 600) and spec.full_counts == (21600, 5400)
    assert spec.downloads[0].md5 == "c8fa014336c82ac7804f0398fcb19387" and spec.downloads[0].archive_root == "2750"


def test_group_rules_read_the_file_names_as_the_sources_describe() -> None:
    malaria = get_dataset("malaria_cells")
    assert malaria.group_of("Parasitized/C100P61ThinF_IMG_20150918_144104_cell_163.jpg") == "C100"
    assert malaria.group_of("Uninfected/C47P8thin_Original_Motic_IMG_1_cell_1.jpg") == malaria.group_of(
        "Parasitized/C47P8thinOriginalOlympusCX21_IMG_2_cell_9.jpg"
    )
    assert malaria.group_of("Uninfected/C1_thinF_IMG_20150604_104919_cell_31.jpg") == "C1"
    gtsrb = get_dataset("gtsrb")
    assert gtsrb.group_of("train/07/00007_00012_00029.jpg") == "00007_00012"
    assert gtsrb.group_of("test/07/00403.jpg") is None
    brain = get_dataset("brain_tumor_mri_figshare")
    assert brain.group_of("glioma/1841.jpg") == brain.group_of("glioma/1899.jpg") != brain.group_of("glioma/1900.jpg")
    with pytest.raises(StudyError, match="needs a capture group"):
        from dataclasses import replace

        replace(malaria, group_pattern=r"C\d+")


# ------------------------------------------------------------------------------------------------------ loading


@pytest.mark.parametrize("name", list(NEW))
def test_pack_dataset_loads_with_its_source_counts(name: str, datapack: Path) -> None:
    n_pool, n_test, per_class = NEW[name]
    spec = get_dataset(name)
    ds = _load(name)
    assert (len(ds.pool), len(ds.test)) == (n_pool, n_test)
    assert ds.class_names == list(spec.class_names) and ds.domain == spec.domain
    k = _n_classes(name)
    totals = np.bincount(np.concatenate([ds.pool.labels, ds.test.labels]), minlength=k).tolist()
    assert totals == ([per_class] * k if isinstance(per_class, int) else per_class)
    assert set(np.unique(ds.test.labels)) == set(range(k)), "every class in the test set"
    assert ds.pool.images.shape == (n_pool, SIZE, SIZE, 3) and ds.pool.images.std() > 5
    assert not set(ds.pool.ids) & set(ds.test.ids)
    assert (ds.pool.groups is not None) == (name in GROUPED)


# ------------------------------------------------------------------------------------------------------ leakage


@pytest.mark.parametrize("name", GROUPED)
def test_no_group_crosses_the_test_or_the_validation_line(name: str) -> None:
    ds = _load(name)
    pool_groups, test_groups = set(ds.pool.groups.tolist()), set(ds.test.groups.tolist())
    assert not pool_groups & test_groups, "a patient/slide/track on both sides of the test split"
    for seed in (0, 1):
        previous = None
        for n in [n for n in (50, 250, 900) if n >= 4 * ds.n_classes]:
            train, val = train_val_split(ds.pool.labels, n, seed, groups=ds.pool.groups)
            assert len(train) + len(val) == n and not set(train) & set(val)
            assert not set(ds.pool.groups[train].tolist()) & set(ds.pool.groups[val].tolist()), (seed, n)
            counts = np.bincount(ds.pool.labels[val], minlength=ds.n_classes)
            assert counts.min() >= 1, "every class keeps a validation image"
            assert abs(len(val) / n - 0.2) < 0.06, "about 20 % validation"
            if previous is not None:
                assert set(previous[0]) <= set(train) and set(previous[1]) <= set(val), "nested in N"
            previous = (train, val)
        first, again = (train_val_split(ds.pool.labels, 250, seed, groups=ds.pool.groups) for _ in range(2))
        assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True)), "deterministic"
    val0 = train_val_split(ds.pool.labels, 250, 0, groups=ds.pool.groups)[1]
    val1 = train_val_split(ds.pool.labels, 250, 1, groups=ds.pool.groups)[1]
    assert not np.array_equal(val0, val1), "another seed, another validation set"


def test_a_random_split_would_have_leaked(datapack: Path) -> None:
    """The groups matter: the ungrouped carving of the same pool puts one GTSRB track on both sides."""
    ds = _load("gtsrb")
    train, val = train_val_split(ds.pool.labels, 1000, 0)
    assert set(ds.pool.groups[train].tolist()) & set(ds.pool.groups[val].tolist())


# ------------------------------------------------------------------------------------------------------ tiny cells


@pytest.fixture(scope="module")
def runner():
    from study.engine.cell import CellRunner

    return CellRunner(config.cache_dir(), config.data_dirs(), config.weights_dirs(), measure_latency=False)


# One dataset per way a pool and test set come about; the loading and leakage tests above cover every dataset, and a
# cell's code path depends on the layout, not on the dataset (a cell on a 43- or 101-class set only takes longer).
TINY_CELLS = {
    "clothing_small": "official train/test folders",
    "neu_surface_defects": "one folder, fixed stratified 20 % test split",
    "malaria_cells": "grouped (slides): whole groups on each side of the test and validation lines",
    "pacs_sketch": "one domain of a multi-domain folder (PACS / Office-31)",
}


def test_tiny_cells_cover_every_layout() -> None:
    """The chosen datasets really are one official, one fixed-fraction, one grouped and one multi-domain dataset."""
    specs = {name: get_dataset(name) for name in TINY_CELLS}
    assert specs["clothing_small"].test_split == "official" and specs["clothing_small"].group_pattern is None
    neu = specs["neu_surface_defects"]
    assert neu.test_split == "fixed_fraction" and neu.label_space is None and neu.group_pattern is None
    assert specs["malaria_cells"].group_pattern is not None and "malaria_cells" in GROUPED
    assert len(label_space_members(specs["pacs_sketch"].label_space)) > 1
    assert {s.folder for s in specs.values()} <= set(PACK_FOLDERS)


@pytest.mark.parametrize("name", list(TINY_CELLS))
def test_a_tiny_cell_runs(name: str, runner, keras_cache: Path) -> None:
    from study.engine.grid import Cell

    n = max(50, 2 * _n_classes(name))
    cell = Cell(dataset=name, n_images=n, strategy="linear_probe", backbone="mobilenet_v2", image_size=SIZE, seed=0,
                epochs=1, trials=1, augment=False, max_test=120, grid="test", retries=0)
    data = runner.cell_data(cell)
    if data.pool.groups is not None:
        assert not set(data.pool.groups[data.train_idx].tolist()) & set(data.pool.groups[data.val_idx].tolist())
    row = runner.run(cell)
    assert row["metrics"]["n_train"] + row["metrics"]["n_val"] == n
    assert row["metrics"]["n_test"] == min(120, NEW[name][1])
    assert 0.0 <= row["accuracy"] <= 1.0 and row["domain"] == get_dataset(name).domain
