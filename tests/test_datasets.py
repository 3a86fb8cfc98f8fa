"""Registry, loaders and downloader: every shipped dataset loads with its documented counts, the decoded
cache is fast and never half-written, every bad input is a one-line StudyError, and downloads are
verified and atomic (tested without the network: file:// URLs, a fake session, a refused port)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import struct
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from study import config
from study.data import download, loaders
from study.data.datasets import (
    BUILTIN_DOMAINS,
    DATAPACK_DATASETS,
    TEXT_DOMAINS,
    DatasetSpec,
    Download,
    get_dataset,
    known_domains,
    list_datasets,
    register_dataset,
    register_image_folder,
    unregister_dataset,
    with_root,
)
from study.data.loaders import ImageSet, load_dataset
from study.data.readers import decode_image, read_idx
from study.errors import DatasetUnavailableError, StudyError

SIZE = 32
CACHE = config.cache_dir()  # the test cache (conftest sets TRANSFER_STUDY_CACHE)

# (pool, test, class names, per-class pool counts or None) from each dataset's SOURCE.txt
PACK = {
    "cats_and_dogs_filtered": (2000, 1000, ["cats", "dogs"], [1000, 1000]),
    "cifar10_subset": (
        10000,
        2000,
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        [1000] * 10,
    ),
    "chest_xray_pneumonia_224": (5216, 624, ["NORMAL", "PNEUMONIA"], [1341, 3875]),
    "retinamnist": (1200, 400, ["0", "1", "2", "3", "4"], [540, 140, 234, 214, 72]),
    "rsscn7_160": (
        2240,
        560,
        ["aGrass", "bField", "cIndustry", "dRiverLake", "eForest", "fResident", "gParking"],
        [320] * 7,
    ),
    "mnist": (8000, 2000, [str(i) for i in range(10)], None),
}


# ------------------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------------------


def test_registry_has_every_datapack_dataset_with_real_folders(datapack: Path) -> None:
    assert set(PACK) <= set(DATAPACK_DATASETS), "the second batch is checked in test_datasets_pack.py"
    for name in PACK:
        spec = get_dataset(name)
        assert (datapack / spec.folder).is_dir(), name
        assert spec.is_present(datapack / spec.folder), f"{name}: required files missing in the pack"
        assert spec.expected_counts == PACK[name][:2]
        assert list(spec.class_names) == PACK[name][2]


def test_every_entry_has_domain_source_and_checksum_or_reason() -> None:
    names = list_datasets()
    for required in ("eurosat_rgb", "tf_flowers", "fashion_mnist", "mnist_full", "pathmnist", "organsmnist"):
        assert required in names
    assert "chestmnist" not in names, "multi-label: deliberately not registered"
    for name in names:
        spec = get_dataset(name)
        assert spec.domain in (TEXT_DOMAINS if spec.modality == "text" else BUILTIN_DOMAINS), name
        assert spec.description and spec.license and spec.citation, name
        assert spec.downloads or spec.homepage, f"{name}: no URL at all"
        if not spec.downloads:
            assert "no download" in spec.checksum_note, f"{name}: why there is no download"
        for dl in spec.downloads:
            assert re.match(r"^https?://", dl.url), dl.url
            assert dl.has_checksum or spec.checksum_note, f"{name}: no checksum and no reason"
            if dl.md5:
                assert re.fullmatch(r"[0-9a-f]{32}", dl.md5)
            if dl.sha256:
                assert re.fullmatch(r"[0-9a-f]{64}", dl.sha256)
        if spec.format == "medmnist_npz":
            assert spec.downloads[0].url.startswith("https://zenodo.org/records/10519652/files/")
            assert spec.downloads[0].md5


def test_retinamnist_md5_matches_the_pack_file(datapack: Path) -> None:
    """The MedMNIST md5 in the table is the real one: the pack's verified copy has it."""
    spec = get_dataset("retinamnist")
    path = datapack / "retinamnist" / "retinamnist.npz"
    download.verify(path, spec.downloads[0])  # raises on mismatch (and would delete: the pack is read-only)


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(StudyError, match=r"unknown dataset 'imagenet'; known datasets: .*cats_and_dogs_filtered"):
        get_dataset("imagenet")


def test_domains_and_filters() -> None:
    assert set(BUILTIN_DOMAINS) <= set(known_domains())
    medical = list_datasets("medical")
    assert "retinamnist" in medical and "chest_xray_pneumonia_224" in medical and "mnist" not in medical
    assert list_datasets("satellite") == ["eurosat_rgb", "rsscn7_160", "uc_merced_landuse"]


def test_spec_validation() -> None:
    base = get_dataset("rsscn7_160")
    with pytest.raises(StudyError, match="unknown format"):
        replace(base, format="tfrecord")
    with pytest.raises(StudyError, match="test_fraction"):
        replace(base, test_fraction=1.5)
    with pytest.raises(StudyError, match="needs test_part"):
        replace(base, test_split="official")
    with pytest.raises(StudyError, match="already registered"):
        register_dataset(base)


# ------------------------------------------------------------------------------------------------------------
# The data pack
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PACK))
def test_pack_dataset_loads_with_documented_counts(name: str, datapack: Path) -> None:
    n_pool, n_test, classes, per_class = PACK[name]
    ds = load_dataset(name, SIZE, data_dirs=[datapack], cache_dir=CACHE)
    assert (len(ds.pool), len(ds.test)) == (n_pool, n_test)
    assert ds.class_names == classes and ds.n_classes == len(classes)
    assert ds.domain == get_dataset(name).domain
    for part in (ds.pool, ds.test):
        assert part.images.shape == (len(part), SIZE, SIZE, 3) and part.images.dtype == np.uint8
        assert part.labels.dtype == np.int64 and part.labels.shape == (len(part),)
        assert set(np.unique(part.labels)) == set(range(len(classes))), "every class in pool and test"
        assert len(part.ids) == len(part) and len(set(part.ids)) == len(part)
        assert part.images.std() > 5, "images are not blank"
    assert not set(ds.pool.ids) & set(ds.test.ids), "test images never leak into the pool"
    if per_class is not None:
        assert np.bincount(ds.pool.labels).tolist() == per_class
    assert re.fullmatch(r"[0-9a-f]{64}", ds.source_checksum)


def test_mnist_uses_t10k_as_pool_with_fixed_stratified_test(datapack: Path) -> None:
    ds = load_dataset("mnist", SIZE, data_dirs=[datapack], cache_dir=CACHE)
    both = np.bincount(np.concatenate([ds.pool.labels, ds.test.labels]))
    assert both.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # SOURCE.txt
    exact = 0.2 * both
    assert np.all(np.abs(np.bincount(ds.test.labels) - exact) < 1)
    assert ds.pool.ids[0].startswith("t10k/")
    again = load_dataset("mnist", SIZE, data_dirs=[datapack], cache_dir=CACHE)
    assert ds.test.ids == again.test.ids, "the fixed test split is the same on every load"


def test_chest_is_imbalanced_and_retina_ids_name_the_split(datapack: Path) -> None:
    chest = load_dataset("chest_xray_pneumonia_224", SIZE, data_dirs=[datapack], cache_dir=CACHE)
    assert np.bincount(chest.test.labels).tolist() == [234, 390]
    assert chest.test.ids[0].startswith("dataset/test/NORMAL/")
    retina = load_dataset("retinamnist", SIZE, data_dirs=[datapack], cache_dir=CACHE)
    assert retina.pool.ids[0] == "train/0" and retina.pool.ids[-1] == "val/119" and retina.test.ids[0] == "test/0"


def test_decoded_cache_is_faster_equal_and_atomic(datapack: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    t0 = time.perf_counter()
    cold = load_dataset("rsscn7_160", SIZE, data_dirs=[datapack], cache_dir=cache)
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    warm = load_dataset("rsscn7_160", SIZE, data_dirs=[datapack], cache_dir=cache)
    t_warm = time.perf_counter() - t0
    assert t_warm < t_cold / 3, (t_cold, t_warm)
    for a, b in ((cold.pool, warm.pool), (cold.test, warm.test)):
        assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels) and a.ids == b.ids
    assert cold.source_checksum == warm.source_checksum
    entries = list((cache / "decoded").iterdir())
    assert [e.name for e in entries] == [f"rsscn7_160-{SIZE}-{cold.source_checksum[:12]}"], "no temp leftovers"
    nocache = load_dataset("rsscn7_160", SIZE, data_dirs=[datapack], cache_dir=CACHE, use_cache=False)
    assert np.array_equal(nocache.pool.images, cold.pool.images)


def test_interrupted_cache_write_leaves_nothing(datapack: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    calls = {"n": 0}
    real_save = np.save

    def failing_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed mid-write")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(loaders.np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("retinamnist", SIZE, data_dirs=[datapack], cache_dir=cache)
    assert list((cache / "decoded").iterdir()) == [], "no half-written cache folder"
    monkeypatch.setattr(loaders.np, "save", real_save)
    ds = load_dataset("retinamnist", SIZE, data_dirs=[datapack], cache_dir=cache)
    assert len(ds.pool) == 1200
    # a stale temp folder from a killed process is never read as a cache
    (cache / "decoded" / ".retinamnist-32-deadbeef.tmp-x").mkdir()
    assert len(load_dataset("retinamnist", SIZE, data_dirs=[datapack], cache_dir=cache).test) == 400


def test_entry_points_read_the_environment_and_a_damaged_cache_is_rebuilt(tmp_path: Path, monkeypatch) -> None:
    """``study.config`` turns the environment into plain paths (at the entry points); loaders take them."""
    monkeypatch.setenv("TRANSFER_STUDY_CACHE", str(tmp_path / "envcache"))
    assert config.cache_dir() == tmp_path / "envcache"
    ds = load_dataset("retinamnist", 16, config.data_dirs(), config.cache_dir())  # TRANSFER_STUDY_DATA: the pack
    folder = tmp_path / "envcache" / "decoded" / f"retinamnist-16-{ds.source_checksum[:12]}"
    assert (folder / "meta.json").is_file()
    (folder / "part2_images.npy").write_bytes(b"garbage")
    again = load_dataset("retinamnist", 16, config.data_dirs(), config.cache_dir())
    assert np.array_equal(again.test.images, ds.test.images)
    assert np.load(folder / "part2_images.npy").shape == (400, 16, 16, 3), "the damaged cache was replaced"


def test_second_data_dir_and_missing_dataset(datapack: Path, tmp_path: Path) -> None:
    ds = load_dataset("retinamnist", SIZE, data_dirs=[tmp_path / "nothing", datapack], cache_dir=tmp_path / "c")
    assert len(ds.test) == 400
    with pytest.raises(DatasetUnavailableError) as err:
        load_dataset("cifar10_subset", SIZE, data_dirs=[tmp_path], cache_dir=tmp_path / "c")
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "cifar10_subset") in msg and "TRANSFER_STUDY_DATA" in msg
    with pytest.raises(DatasetUnavailableError, match="downloads are disabled.*zenodo"):
        load_dataset("pathmnist", SIZE, data_dirs=[tmp_path], cache_dir=tmp_path / "c", allow_download=False)


def test_image_size_is_validated(datapack: Path) -> None:
    for bad in (0, 4, 5000, 32.0, True):
        with pytest.raises(StudyError, match="image_size"):
            load_dataset("retinamnist", bad, data_dirs=[datapack], cache_dir=CACHE)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------------
# Image folders built in tmp_path: formats, user registration, and every bad input
# ------------------------------------------------------------------------------------------------------------


def _img(path: Path, mode: str = "RGB", size: tuple[int, int] = (40, 30), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    if mode == "I;16":
        im = Image.fromarray(np.full(size[::-1], 32896, dtype=np.uint16))  # mid-grey in 16 bits
    else:
        im = Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).convert(mode)
    im.save(path, format=fmt)
    return path


def _folder_spec(root: Path, **kw) -> DatasetSpec:
    return DatasetSpec(
        name=kw.pop("name", "tmp"),
        domain="natural",
        format="image_folder",
        folder=root.name,
        pool_parts=("",),
        test_split="fixed_fraction",
        test_fraction=0.25,
        root=root,
        **kw,
    )


def test_image_folder_handles_modes_sizes_hidden_and_nested(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    _img(root / "b_cls" / "rgb.jpg", "RGB", (500, 374))
    _img(root / "b_cls" / "grey.png", "L", (20, 60))
    _img(root / "b_cls" / "sub" / "alpha.png", "RGBA")
    _img(root / "b_cls" / "pal.gif", "P")
    _img(root / "a_cls" / "deep16.png", "I;16")
    _img(root / "a_cls" / "cmyk.jpg", "CMYK")
    _img(root / "a_cls" / "la.png", "LA")
    _img(root / "a_cls" / "small.bmp", "RGB", (5, 5))
    (root / "a_cls" / ".DS_Store").write_bytes(b"\0junk")
    (root / "a_cls" / "Thumbs.db").write_bytes(b"\0junk")
    (root / ".hidden_class").mkdir()
    (root / "README.txt").write_text("top-level files are not classes")
    ds = load_dataset(_folder_spec(root), 24, data_dirs=[], cache_dir=tmp_path / "c")
    assert ds.class_names == ["a_cls", "b_cls"]
    allset = ImageSet(
        np.concatenate([ds.pool.images, ds.test.images]),
        np.concatenate([ds.pool.labels, ds.test.labels]),
        ds.pool.ids + ds.test.ids,
    )
    assert allset.images.shape == (8, 24, 24, 3) and allset.images.dtype == np.uint8
    assert "b_cls/sub/alpha.png" in allset.ids
    assert len(ds.test) == 2 and set(ds.test.labels) == {0, 1}
    grey = decode_image(root / "b_cls" / "grey.png", 16)
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    deep = decode_image(root / "a_cls" / "deep16.png", 16)
    assert Image.open(root / "a_cls" / "deep16.png").mode.startswith("I")
    assert np.all(np.abs(deep.astype(int) - 128) <= 1), "16-bit grey is scaled by 1/257, not clipped to 255"


def test_register_image_folder_and_official_split(tmp_path: Path) -> None:
    root = tmp_path / "my_xrays"
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("healthy", "sick"):
            for i in range(n):
                _img(root / split / cls / f"{i}.png")
    try:
        spec = register_image_folder("my_xrays", root, domain="xray")
        assert spec.test_split == "official" and "xray" in known_domains()
        ds = load_dataset("my_xrays", 16, data_dirs=[], cache_dir=tmp_path / "c")
        assert (len(ds.pool), len(ds.test), ds.domain) == (6, 4, "xray")
        assert ds.test.ids[0] == "test/healthy/0.png"
        with pytest.raises(StudyError, match="already registered"):
            register_image_folder("my_xrays", root, domain="xray")
    finally:
        unregister_dataset("my_xrays")
    flat = tmp_path / "flat"
    for cls in ("x", "y"):
        for i in range(5):
            _img(flat / cls / f"{i}.jpg")
    try:
        spec = register_image_folder("flat_user", flat, domain="natural", test_fraction=0.2)
        assert spec.test_split == "fixed_fraction"
        ds = load_dataset("flat_user", 16, data_dirs=[], cache_dir=tmp_path / "c")
        assert (len(ds.pool), len(ds.test)) == (8, 2)
    finally:
        unregister_dataset("flat_user")
    with pytest.raises(StudyError, match="does not exist"):
        register_image_folder("nope", tmp_path / "missing", domain="natural")


def test_cache_key_changes_when_the_folder_changes(tmp_path: Path) -> None:
    root = tmp_path / "grow"
    for cls in ("a", "b"):
        for i in range(4):
            _img(root / cls / f"{i}.png")
    first = load_dataset(_folder_spec(root), 16, data_dirs=[], cache_dir=tmp_path / "c")
    _img(root / "a" / "new.png")
    second = load_dataset(_folder_spec(root), 16, data_dirs=[], cache_dir=tmp_path / "c")
    assert first.source_checksum != second.source_checksum
    assert len(second.pool) + len(second.test) == 9


def _one_line_error(spec: DatasetSpec, tmp_path: Path, pattern: str) -> str:
    with pytest.raises(StudyError, match=pattern) as err:
        load_dataset(spec, 16, data_dirs=[], cache_dir=tmp_path / "c")
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_bad_image_folders(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(_folder_spec(empty), tmp_path, "no class sub-folders; put each class")

    loose = tmp_path / "loose"
    _img(loose / "a.jpg")
    _one_line_error(_folder_spec(loose), tmp_path, "has images but no class sub-folders")

    hollow = tmp_path / "hollow"
    _img(hollow / "a" / "1.jpg")
    (hollow / "b").mkdir()
    _one_line_error(_folder_spec(hollow), tmp_path, r"class folder .*hollow/b has no images")

    corrupt = tmp_path / "corrupt"
    _img(corrupt / "a" / "ok.jpg")
    (corrupt / "b").mkdir()
    (corrupt / "b" / "bad.jpg").write_bytes(b"this is not a jpeg at all")
    msg = _one_line_error(_folder_spec(corrupt), tmp_path, "1 of 2 images in .* cannot be read")  # 50 %: too many
    assert str(corrupt) in msg and "b/bad.jpg" in msg and "delete or replace" in msg

    truncated = tmp_path / "truncated"
    _img(truncated / "a" / "ok.jpg")
    whole = _img(truncated / "b" / "cut.jpg", "RGB", (300, 200)).read_bytes()
    (truncated / "b" / "cut.jpg").write_bytes(whole[: len(whole) // 3])
    assert "(b/cut.jpg: " in _one_line_error(_folder_spec(truncated), tmp_path, "cannot be read")

    stray = tmp_path / "stray"
    _img(stray / "a" / "1.jpg")
    _img(stray / "b" / "1.jpg")
    (stray / "b" / "notes.txt").write_text("hello")
    msg = _one_line_error(_folder_spec(stray), tmp_path, "is not an image")
    assert str(stray / "b" / "notes.txt") in msg

    mismatch = tmp_path / "mismatch"
    for split, classes in (("train", ("a", "b")), ("test", ("a", "c"))):
        for cls in classes:
            _img(mismatch / split / cls / "1.png")
    spec = replace(_folder_spec(mismatch), pool_parts=("train",), test_part="test", test_split="official")
    _one_line_error(spec, tmp_path, "same class folders")


def test_expected_classes_and_counts_are_checked(tmp_path: Path) -> None:
    root = tmp_path / "two"
    for cls in ("cats", "dogs"):
        for i in range(4):
            _img(root / cls / f"{i}.jpg")
    _one_line_error(_folder_spec(root, class_names=("cat", "dog")), tmp_path, r"has classes \['cats', 'dogs'\]")
    _one_line_error(
        _folder_spec(root, class_names=("cats", "dogs"), expected_counts=(100, 25)),
        tmp_path,
        "6 pool / 2 test images, expected 100 / 25",
    )


# ------------------------------------------------------------------------------------------------------------
# MedMNIST npz and IDX files built in tmp_path
# ------------------------------------------------------------------------------------------------------------


def _npz_spec(root: Path, npz: str = "toy.npz", **kw) -> DatasetSpec:
    return DatasetSpec(
        name="toy_npz",
        domain="medical",
        format="medmnist_npz",
        folder=root.name,
        npz_file=npz,
        pool_parts=("train", "val"),
        test_part="test",
        root=root,
        **kw,
    )


def _write_npz(path: Path, grey: bool = False, drop: tuple[str, ...] = (), multilabel: bool = False) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for part, n in (("train", 12), ("val", 4), ("test", 6)):
        shape = (n, 28, 28) if grey else (n, 28, 28, 3)
        arrays[f"{part}_images"] = rng.integers(0, 255, shape, dtype=np.uint8)
        arrays[f"{part}_labels"] = (
            rng.integers(0, 2, (n, 3)).astype(np.uint8) if multilabel else (np.arange(n) % 3).reshape(n, 1)
        ).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{k: v for k, v in arrays.items() if k not in drop})


def test_npz_loads_grey_and_rgb(tmp_path: Path) -> None:
    _write_npz(tmp_path / "g" / "toy.npz", grey=True)
    ds = load_dataset(_npz_spec(tmp_path / "g"), 32, data_dirs=[], cache_dir=tmp_path / "c")
    assert ds.pool.images.shape == (16, 32, 32, 3) and ds.test.images.shape == (6, 32, 32, 3)
    assert ds.class_names == ["0", "1", "2"] and ds.pool.ids[12] == "val/0"
    native = load_dataset(_npz_spec(tmp_path / "g"), 28, data_dirs=[], cache_dir=tmp_path / "c")
    with np.load(tmp_path / "g" / "toy.npz") as raw:
        assert np.array_equal(native.pool.images[:12, ..., 1], raw["train_images"]), "native size: no resampling"


def test_bad_npz_files(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "toy.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    msg = _one_line_error(_npz_spec(tmp_path / "junk"), tmp_path, "not a valid .npz")
    assert str(tmp_path / "junk" / "toy.npz") in msg

    _write_npz(tmp_path / "keys" / "toy.npz", drop=("val_images", "test_labels"))
    msg = _one_line_error(_npz_spec(tmp_path / "keys"), tmp_path, "lacks keys")
    assert "'val_images'" in msg and "'test_labels'" in msg and "toy.npz" in msg

    _write_npz(tmp_path / "multi" / "toy.npz", multilabel=True)
    _one_line_error(_npz_spec(tmp_path / "multi"), tmp_path, "multi-label")

    _write_npz(tmp_path / "range" / "toy.npz")
    _one_line_error(_npz_spec(tmp_path / "range", class_names=("a", "b")), tmp_path, "labels span 0..2")


def _write_idx(path: Path, arr: np.ndarray, magic: int | None = None, compress: bool = True) -> None:
    header = struct.pack(">I", magic if magic is not None else 0x0800 | arr.ndim)
    header += b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)


def _idx_spec(root: Path) -> DatasetSpec:
    return DatasetSpec(
        name="toy_idx",
        domain="digits",
        format="idx_gz",
        folder=root.name,
        pool_parts=("train",),
        test_part="t10k",
        class_names=tuple(str(i) for i in range(10)),
        root=root,
    )


def _idx_dataset(root: Path, n_train: int = 30, n_test: int = 10) -> None:
    rng = np.random.default_rng(1)
    for part, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(root / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(root / f"{part}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_idx_loads_and_matches_the_pack_parser(tmp_path: Path, datapack: Path) -> None:
    _idx_dataset(tmp_path / "idx")
    ds = load_dataset(_idx_spec(tmp_path / "idx"), 28, data_dirs=[], cache_dir=tmp_path / "c")
    assert ds.pool.images.shape == (30, 28, 28, 3) and ds.test.ids[-1] == "t10k/9"
    raw = read_idx(tmp_path / "idx" / "train-images-idx3-ubyte.gz", 3)
    assert np.array_equal(ds.pool.images[..., 2], raw)
    labels = read_idx(datapack / "mnist" / "train-labels-idx1-ubyte.gz", 1)
    assert labels.shape == (60000,) and np.bincount(labels)[0] == 5923  # SOURCE.txt


def test_bad_idx_files(tmp_path: Path) -> None:
    _idx_dataset(tmp_path / "magic")
    _write_idx(tmp_path / "magic" / "train-images-idx3-ubyte.gz", np.zeros((30, 28, 28)), magic=0x0000_0801)
    msg = _one_line_error(_idx_spec(tmp_path / "magic"), tmp_path, r"magic number 0x00000801, expected 0x00000803")
    assert "train-images-idx3-ubyte.gz" in msg

    _idx_dataset(tmp_path / "trunc")
    data = gzip.decompress((tmp_path / "trunc" / "t10k-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "trunc" / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(data[:-100]))
    _one_line_error(_idx_spec(tmp_path / "trunc"), tmp_path, "truncated or corrupt")

    _idx_dataset(tmp_path / "count")
    _write_idx(tmp_path / "count" / "t10k-labels-idx1-ubyte.gz", np.arange(7) % 10)
    _one_line_error(_idx_spec(tmp_path / "count"), tmp_path, "has 10 images but .* has 7 labels")

    _idx_dataset(tmp_path / "notgz")
    (tmp_path / "notgz" / "train-labels-idx1-ubyte.gz").write_bytes(b"plain bytes, not gzip")
    _one_line_error(_idx_spec(tmp_path / "notgz"), tmp_path, "cannot read IDX file")


# ------------------------------------------------------------------------------------------------------------
# Downloads, without the network
# ------------------------------------------------------------------------------------------------------------


def _zip_of_image_folder(path: Path, top: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for cls in ("cats", "dogs"):
            for i in range(3):
                img = io.BytesIO()
                Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(img, "JPEG")
                zf.writestr(f"{top}/{cls}/{i}.jpg", img.getvalue())
        zf.writestr("../evil.txt", "path traversal must be skipped")
        zf.writestr(f"{top}/__MACOSX/x", "")
        zf.writestr("outside/readme.txt", "outside archive_root: skipped")
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def _dl_spec(url: str, **dl_kw) -> DatasetSpec:
    return DatasetSpec(
        name="toy_online",
        domain="natural",
        format="image_folder",
        folder="toy_online",
        pool_parts=("",),
        test_split="fixed_fraction",
        test_fraction=1 / 3,
        class_names=("cats", "dogs"),
        expected_counts=(4, 2),
        downloads=(Download(url=url, filename="toy.zip", extract=True, archive_root="toy", **dl_kw),),
    )


def test_download_verifies_extracts_and_loads(tmp_path: Path) -> None:
    data = _zip_of_image_folder(tmp_path / "toy.zip", "toy")
    sha = hashlib.sha256(data).hexdigest()
    spec = _dl_spec((tmp_path / "toy.zip").as_uri(), sha256=sha, size=len(data))
    dl_dir = tmp_path / "data"
    root = download.fetch(spec, [tmp_path / "elsewhere", dl_dir], dl_dir, progress=False)
    assert root == dl_dir / "toy_online"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        f"{c}/{i}.jpg" for c in ("cats", "dogs") for i in range(3)
    ]
    assert [p.name for p in dl_dir.iterdir()] == ["toy_online"], "no staging folder or archive left"
    assert not (tmp_path / "evil.txt").exists()
    assert download.fetch(spec, [dl_dir], dl_dir) == root, "found on disk: no second download"
    ds = load_dataset(spec, 16, data_dirs=[dl_dir], cache_dir=tmp_path / "c")
    assert (len(ds.pool), len(ds.test)) == (4, 2)


def test_download_plain_file_with_md5(tmp_path: Path) -> None:
    _write_npz(tmp_path / "src" / "toy.npz")
    md5 = hashlib.md5((tmp_path / "src" / "toy.npz").read_bytes()).hexdigest()
    spec = replace(
        _npz_spec(tmp_path),
        root=None,
        folder="toy_npz",
        downloads=(Download(url=(tmp_path / "src" / "toy.npz").as_uri(), filename="toy.npz", md5=md5),),
    )
    ds = load_dataset(spec, 28, data_dirs=[tmp_path / "d"], download_dir=tmp_path / "d", cache_dir=tmp_path / "c")
    assert len(ds.test) == 6 and (tmp_path / "d" / "toy_npz" / "toy.npz").is_file()


def test_checksum_mismatch_names_expected_and_actual_and_leaves_nothing(tmp_path: Path) -> None:
    data = _zip_of_image_folder(tmp_path / "toy.zip", "toy")
    actual = hashlib.sha256(data).hexdigest()
    spec = _dl_spec((tmp_path / "toy.zip").as_uri(), sha256="0" * 64)
    dl_dir = tmp_path / "data"
    with pytest.raises(DatasetUnavailableError) as err:
        download.fetch(spec, [dl_dir], dl_dir, progress=False)
    msg = str(err.value)
    assert f"expected sha256 {'0' * 64}, got {actual}" in msg and "\n" not in msg
    assert list(dl_dir.iterdir()) == []
    with pytest.raises(DatasetUnavailableError, match="expected size 5, got"):
        download.fetch(_dl_spec((tmp_path / "toy.zip").as_uri(), size=5), [dl_dir], dl_dir, progress=False)
    assert list(dl_dir.iterdir()) == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/toy.zip", "http://203.0.113.1/toy.zip"])
def test_unreachable_host_gives_one_fast_line(tmp_path: Path, url: str) -> None:
    spec = _dl_spec(url, sha256="0" * 64)
    dirs = [tmp_path / "a", tmp_path / "b"]
    t0 = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as err:
        download.fetch(spec, dirs, tmp_path / "a", timeout=1.0, progress=False)
    assert time.perf_counter() - t0 < 10
    msg = str(err.value)
    assert "\n" not in msg
    for piece in ("'toy_online'", str(tmp_path / "a" / "toy_online"), str(tmp_path / "b" / "toy_online"), url):
        assert piece in msg
    assert "go online" in msg and "TRANSFER_STUDY_DATA" in msg
    assert list((tmp_path / "a").iterdir()) == []


class _FakeResponse:
    def __init__(self, chunks: list[bytes], fail_after: int | None) -> None:
        self.chunks, self.fail_after = chunks, fail_after
        self.headers = {"content-length": str(sum(map(len, chunks)))}

    def __enter__(self) -> _FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def raise_for_status(self) -> None:
        return None

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        for i, c in enumerate(self.chunks):
            if self.fail_after is not None and i == self.fail_after:
                import requests

                raise requests.exceptions.ConnectionError("connection reset by peer")
            yield c


class _FakeSession:
    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        self.data, self.fail_after, self.urls = data, fail_after, []

    def get(self, url: str, stream: bool, timeout: object) -> _FakeResponse:
        self.urls.append(url)
        chunks = [self.data[i : i + 1000] for i in range(0, len(self.data), 1000)]
        return _FakeResponse(chunks, self.fail_after)


def test_interrupted_stream_and_mirror_fallback(tmp_path: Path) -> None:
    data = _zip_of_image_folder(tmp_path / "toy.zip", "toy")
    spec = _dl_spec("https://example.org/toy.zip", md5=hashlib.md5(data).hexdigest())
    dl_dir = tmp_path / "data"
    with pytest.raises(DatasetUnavailableError, match="connection reset by peer"):
        download.fetch(spec, [dl_dir], dl_dir, session=_FakeSession(data, fail_after=2), progress=False)
    assert list(dl_dir.iterdir()) == [], "a broken stream leaves no partial file"
    session = _FakeSession(data)
    root = download.fetch(spec, [dl_dir], dl_dir, session=session, progress=False)
    assert session.urls == ["https://example.org/toy.zip"] and (root / "cats" / "0.jpg").is_file()

    mirrored = replace(
        spec,
        folder="mirrored",
        downloads=(
            replace(spec.downloads[0], url="http://127.0.0.1:9/toy.zip", mirrors=((tmp_path / "toy.zip").as_uri(),)),
        ),
    )
    assert download.fetch(mirrored, [dl_dir], dl_dir, timeout=1.0, progress=False) == dl_dir / "mirrored"


def test_no_download_and_disabled_download_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match=r"has no download \(source: https://github.com/YoongiKim"):
        download.fetch(get_dataset("cifar10_subset"), [tmp_path], tmp_path)
    with pytest.raises(DatasetUnavailableError, match="downloads are disabled"):
        download.fetch(get_dataset("tf_flowers"), [tmp_path], tmp_path, allow_download=False)
    assert list(tmp_path.iterdir()) == []


def test_archive_layout_change_is_reported(tmp_path: Path) -> None:
    data = _zip_of_image_folder(tmp_path / "toy.zip", "renamed_top")
    spec = replace(_dl_spec((tmp_path / "toy.zip").as_uri(), sha256=hashlib.sha256(data).hexdigest()))
    spec = replace(spec, pool_parts=("cats_dir",))
    with pytest.raises(DatasetUnavailableError, match="lacks"):
        download.fetch(spec, [tmp_path / "d"], tmp_path / "d", progress=False)
    assert list((tmp_path / "d").iterdir()) == []


def test_with_root_pins_a_folder(datapack: Path) -> None:
    spec = with_root(get_dataset("retinamnist"), datapack / "retinamnist")
    assert download.locate(spec, []) == datapack / "retinamnist"
    assert json.dumps(spec.required_paths()) == '["retinamnist.npz"]'
