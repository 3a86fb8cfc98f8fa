"""Read datasets in their distributed formats into uint8 arrays, with a decoded-image cache.

Formats: image folders (one sub-folder per class, any size, JPEG/PNG/..., any colour mode), MedMNIST
``.npz`` and MNIST-style IDX ``.gz``. Every image comes out RGB uint8, resized to a square ``image_size``
with bilinear filtering and no aspect preservation, as ``tf.keras.utils.image_dataset_from_directory`` does,
so a model sees the same pixels whichever path loaded them.

Why a cache: decoding thousands of JPEGs takes far longer than the experiments that use them, and every run
of the study reloads the same dataset at the same size. Decoded arrays are stored as ``.npy`` under
``<cache>/decoded/<name>-<size>-<fingerprint12>/``; the fingerprint covers the source files (relative path
and size, or the bytes of an npz/IDX file) and the loader version, so a changed dataset or loader never
reads a stale cache. The cache folder is written under a temporary name and renamed, so a killed process
never leaves a half-written cache that a later run would trust.

Every input problem is a one-line ``StudyError`` naming the file and the fix. One exception, so that a stray
broken photo does not sink a whole folder: an image folder with a handful of unreadable images (at most
``UNREADABLE_SKIP_MAX`` files and ``UNREADABLE_SKIP_SHARE`` of the folder: 0-byte, truncated, not really an
image) loads without them, with a warning in the log and their names in ``LoadedDataset.skipped``; more than
that is an error naming the first few. numpy + Pillow only.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from study.data.datasets import IDX_IMAGES, IDX_LABELS, DatasetSpec, get_dataset
from study.data.sampling import fixed_test_split
from study.errors import StudyError

#: Bump when decoding changes (resampling, colour handling): it invalidates every decoded cache.
LOADER_VERSION = "1"

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
#: Files that operating systems drop into folders; skipped like hidden files.
IGNORED_FILES = frozenset({"thumbs.db", "desktop.ini"})
#: An image folder may hold this many unreadable images, and at most this share of its files; they are skipped.
UNREADABLE_SKIP_MAX = 5
UNREADABLE_SKIP_SHARE = 0.10

log = logging.getLogger("study.data.loaders")


IMAGE_SIZES = (8, 1024)
"""Square input sizes the loaders produce (px); the entry points check flags and grid files against it."""

@dataclass
class ImageSet:
    """Images (N, S, S, 3) uint8, labels (N,) int64, and a stable id per image (relative path or part/index).

    ``groups`` (N,) int64, for datasets whose spec has a ``group_pattern``: the id of each image's group (a
    patient, a slide, a track), numbered over pool and test together so the two can be compared; else None.
    Derived from ``ids`` at load time, so the decoded cache does not store it.
    """

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: np.ndarray | Sequence[int]) -> ImageSet:
        """The images at ``idx`` (a copy), e.g. the indices from ``study.data.sampling``."""
        idx = np.asarray(idx, dtype=np.int64)
        groups = None if self.groups is None else self.groups[idx]
        return ImageSet(self.images[idx], self.labels[idx], [self.ids[i] for i in idx], groups)


@dataclass
class LoadedDataset:
    """A dataset ready for the study: the pool that subsets are drawn from, and the fixed test set."""

    name: str
    domain: str
    class_names: list[str]
    pool: ImageSet
    test: ImageSet
    source_checksum: str
    spec: DatasetSpec | None = None
    skipped: tuple[str, ...] = ()  # unreadable images left out (paths relative to the folder)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


# --------------------------------------------------------------------------------------------------------------
# Decoding single images
# --------------------------------------------------------------------------------------------------------------


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode to RGB: alpha and palettes are flattened, deep greyscale is scaled (PIL would clip it).

    16-bit grey maps 0..65535 to 0..255 (value/257, as TensorFlow's decode_png + convert_image_dtype does);
    32-bit integer and float images have no fixed range and are scaled by their own maximum.
    """
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") else arr.max()
        arr = arr * (255.0 / hi) if hi > 0 else arr
        return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "L").convert("RGB")
    if im.mode in ("P", "PA", "LA", "RGBA", "La", "RGBa"):
        return im.convert("RGBA").convert("RGB")
    return im.convert("RGB")


def _resize(im: Image.Image, size: int) -> np.ndarray:
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def decode_image(path: Path, size: int) -> np.ndarray:
    """Decode one image file to (size, size, 3) uint8; a file that is not a readable image names itself."""
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (size, size))  # decode at 1/2..1/8 scale (still >= size): ~5x faster
            return _resize(_to_rgb(im), size)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise StudyError(f"cannot read image {path}: {reason}; delete or replace the file") from None


def _resize_array(images: np.ndarray, size: int, source: str) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 to (N, size, size, 3) uint8."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise StudyError(f"{source}: images have shape {images.shape}; expected (N, H, W) or (N, H, W, 1|3|4)")
    if images.dtype != np.uint8:
        raise StudyError(f"{source}: images are {images.dtype}; expected uint8")
    if images.shape[-1] == 4:
        images = images[..., :3]
    if images.shape[1:3] == (size, size):
        out = images
    else:
        mode = "L" if images.shape[-1] == 1 else "RGB"
        out = np.empty((images.shape[0], size, size, images.shape[-1]), dtype=np.uint8)
        for i, img in enumerate(images):
            pil = Image.fromarray(img[..., 0] if mode == "L" else img, mode)
            out[i] = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR)).reshape(size, size, -1)
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return np.ascontiguousarray(out)


# --------------------------------------------------------------------------------------------------------------
# Readers: one per format. scan() is cheap (lists files, fingerprints); decode() does the heavy work.
# --------------------------------------------------------------------------------------------------------------

Decoded = dict[str, tuple[np.ndarray, np.ndarray, list[str]]]  # part -> (images, labels, ids)


@dataclass
class Scan:
    class_names: list[str]
    fingerprint: str
    decode: Callable[[int], Decoded]
    skipped: list[str] = field(default_factory=list)  # filled by decode: unreadable images it left out


def _is_ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in IGNORED_FILES


def _class_dirs(folder: Path, dataset: str) -> list[str]:
    if not folder.is_dir():
        raise StudyError(f"dataset {dataset!r}: folder {folder} does not exist; check the dataset's layout")
    subdirs = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not _is_ignored(e.name))
    if not subdirs:
        has_images = any(Path(e.name).suffix.lower() in IMAGE_EXTENSIONS for e in os.scandir(folder))
        what = "images but no class sub-folders" if has_images else "no class sub-folders"
        raise StudyError(
            f"dataset {dataset!r}: {folder} has {what}; put each class's images in its own sub-folder "
            "(e.g. cats/, dogs/)"
        )
    return subdirs


def _walk_images(class_dir: Path, dataset: str) -> list[tuple[str, int]]:
    """Sorted (path relative to class_dir, size) of every image below a class folder (recursively)."""
    found: list[tuple[str, int]] = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not _is_ignored(d))
        for fn in filenames:
            if _is_ignored(fn):
                continue
            full = Path(dirpath) / fn
            if full.suffix.lower() not in IMAGE_EXTENSIONS:
                raise StudyError(
                    f"dataset {dataset!r}: {full} is not an image (extension {full.suffix or 'none'}); "
                    f"move it out of the class folder (images: {', '.join(sorted(IMAGE_EXTENSIONS))})"
                )
            found.append((full.relative_to(class_dir).as_posix(), full.stat().st_size))
    found.sort()
    return found


def _workers() -> int:
    return max(1, min(8, (os.cpu_count() or 2)))


def _scan_image_folder(spec: DatasetSpec, root: Path) -> Scan:
    classes: list[str] | None = None
    listing: dict[str, list[tuple[str, int, int]]] = {}  # part -> (rel path from root, size, label)
    for part in spec.parts:
        folder = root / part if part else root
        names = _class_dirs(folder, spec.name)
        if classes is None:
            classes = names
        elif names != classes:
            raise StudyError(
                f"dataset {spec.name!r}: {folder} has classes {names} but {root / spec.parts[0]} has {classes}; "
                "every split needs the same class folders"
            )
        entries: list[tuple[str, int, int]] = []
        for label, cls in enumerate(names):
            files = _walk_images(folder / cls, spec.name)
            if not files:
                raise StudyError(
                    f"dataset {spec.name!r}: class folder {folder / cls} has no images; add some or remove it"
                )
            prefix = f"{part}/{cls}" if part else cls
            entries.extend((f"{prefix}/{rel}", size, label) for rel, size in files)
        listing[part] = entries
    assert classes is not None
    h = hashlib.sha256()
    for part in spec.parts:
        for rel, size, _ in listing[part]:
            h.update(f"{rel}\t{size}\n".encode())

    def decode(size: int) -> Decoded:
        out: Decoded = {}
        bad: dict[str, str] = {}  # relative path -> why it cannot be read
        with ThreadPoolExecutor(max_workers=_workers()) as pool:
            for part, entries in listing.items():
                images = np.empty((len(entries), size, size, 3), dtype=np.uint8)
                ok = np.ones(len(entries), dtype=bool)

                def work(
                    start: int,
                    entries: list[tuple[str, int, int]] = entries,
                    images: np.ndarray = images,
                    ok: np.ndarray = ok,
                ) -> None:
                    for i in range(start, min(start + 64, len(entries))):
                        try:
                            images[i] = decode_image(root / entries[i][0], size)
                        except StudyError as exc:
                            ok[i] = False
                            path = str(root / entries[i][0])
                            why = str(exc).removeprefix(f"cannot read image {path}: ").split("; delete or replace")[0]
                            bad[entries[i][0]] = why.replace(f"'{path}'", "").replace(path, "").strip() or "unreadable"

                list(pool.map(work, range(0, len(entries), 64)))
                keep = np.flatnonzero(ok)
                labels = np.array([e[2] for e in entries], dtype=np.int64)[keep]
                out[part] = (images if ok.all() else images[keep], labels, [entries[i][0] for i in keep])
        scan.skipped[:] = _allow_unreadable(spec.name, root, bad, sum(len(e) for e in listing.values()))
        return out

    scan = Scan(classes, h.hexdigest(), decode)
    return scan


def _allow_unreadable(dataset: str, root: Path, bad: dict[str, str], total: int) -> list[str]:
    """The unreadable images to skip (a handful, logged), or a one-line error naming the first few (too many)."""
    if not bad:
        return []
    names = sorted(bad)
    if len(names) <= UNREADABLE_SKIP_MAX and len(names) <= UNREADABLE_SKIP_SHARE * total:
        log.warning("dataset %r: skipped %d unreadable images in %s: %s", dataset, len(names), root, ", ".join(names))
        return names
    more = f"; also {', '.join(names[1:4])}{' ...' if len(names) > 4 else ''}" if len(names) > 1 else ""
    raise StudyError(
        f"dataset {dataset!r}: {len(names)} of {total} images in {root} cannot be read ({names[0]}: "
        f"{bad[names[0]]}{more}); delete or "
        f"replace them (up to {UNREADABLE_SKIP_MAX} unreadable images, at most {UNREADABLE_SKIP_SHARE:.0%} of a "
        "folder, are skipped with a warning)"
    )


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_labels(labels: np.ndarray, n_classes: int | None, source: str) -> np.ndarray:
    """Labels as int64 (N,); (N, 1) is flattened, (N, k>1) is multi-label and refused."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        raise StudyError(
            f"{source}: labels have shape {labels.shape} (multi-label); this study needs one class per image"
        )
    labels = labels.reshape(-1).astype(np.int64)
    if labels.size and (labels.min() < 0 or (n_classes is not None and labels.max() >= n_classes)):
        raise StudyError(f"{source}: labels span {labels.min()}..{labels.max()} but there are {n_classes} classes")
    return labels


def _names_from_labels(spec: DatasetSpec, labels: list[np.ndarray]) -> list[str]:
    if spec.class_names:
        return list(spec.class_names)
    top = max((int(np.max(x)) for x in labels if x.size), default=-1)
    return [str(i) for i in range(top + 1)]


def _scan_npz(spec: DatasetSpec, root: Path) -> Scan:
    path = root / str(spec.npz_file)
    wanted = [f"{p}_{k}" for p in spec.parts for k in ("images", "labels")]
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in wanted if k not in npz.files]
            raw_labels = {p: np.asarray(npz[f"{p}_labels"]) for p in spec.parts} if not missing else {}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise StudyError(
            f"cannot read {path}: not a valid .npz ({' '.join(str(exc).split())[:120]}); re-download it"
        ) from None
    if missing:
        raise StudyError(f"{path} lacks keys {missing} (a MedMNIST .npz has {wanted}); re-download it")
    flat = {p: _check_labels(lab, None, f"{path} [{p}_labels]") for p, lab in raw_labels.items()}
    class_names = _names_from_labels(spec, list(flat.values()))
    for p, lab in flat.items():
        _check_labels(lab, len(class_names), f"{path} [{p}_labels]")

    def decode(size: int) -> Decoded:
        out: Decoded = {}
        try:
            with np.load(path, allow_pickle=False) as npz:
                for p in spec.parts:
                    src = f"{path} [{p}_images]"
                    images = _resize_array(np.asarray(npz[f"{p}_images"]), size, src)
                    labels = _check_labels(npz[f"{p}_labels"], len(class_names), f"{path} [{p}_labels]")
                    if len(labels) != len(images):
                        raise StudyError(
                            f"{path}: {p} has {len(images)} images but {len(labels)} labels; re-download it"
                        )
                    out[p] = (images, labels, [f"{p}/{i}" for i in range(len(labels))])
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise StudyError(f"cannot read {path}: {' '.join(str(exc).split())[:120]}; re-download it") from None
        return out

    return Scan(class_names, _file_sha256(path), decode)


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4")}


def read_idx(path: Path, expect_ndim: int) -> np.ndarray:
    """Parse an IDX file (gzip or raw): magic 0x0000 | dtype byte | ndim byte, big-endian dims, then data.

    ``expect_ndim`` is 3 for images (magic 0x00000803) and 1 for labels (0x00000801), which catches a
    swapped or foreign file before it becomes garbage labels.
    """
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise StudyError(f"cannot read IDX file {path}: {' '.join(str(exc).split())[:120]}; re-download it") from None
    expected_magic = 0x0800 | expect_ndim
    magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else -1
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or data[3] != expect_ndim:
        raise StudyError(
            f"{path} is not an IDX file with {expect_ndim} dimension(s): magic number 0x{max(magic, 0):08X}, "
            f"expected 0x{expected_magic:08X}; check the file name or re-download it"
        )
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    header = 4 + 4 * expect_ndim
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(expect_ndim)]
    need = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != need:
        raise StudyError(
            f"{path} is truncated or corrupt: header says {dims} ({need} bytes of data) but it has "
            f"{len(data) - header}; re-download it"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def _scan_idx(spec: DatasetSpec, root: Path) -> Scan:
    files = {p: (root / IDX_IMAGES.format(part=p), root / IDX_LABELS.format(part=p)) for p in spec.parts}
    for imgs, labs in files.values():
        for f in (imgs, labs):
            if not f.is_file():
                raise StudyError(f"dataset {spec.name!r}: {f} is missing; re-download the dataset")
    h = hashlib.sha256()
    for p in spec.parts:
        for f in files[p]:
            h.update(f"{f.name}\t{_file_sha256(f)}\n".encode())
    labels_by_part = {p: read_idx(files[p][1], 1) for p in spec.parts}
    class_names = _names_from_labels(spec, list(labels_by_part.values()))

    def decode(size: int) -> Decoded:
        out: Decoded = {}
        for p, (imgs, labs) in files.items():
            raw = read_idx(imgs, 3)
            if raw.dtype != np.uint8:
                raise StudyError(f"{imgs}: IDX images are {raw.dtype}; expected unsigned bytes")
            labels = _check_labels(labels_by_part[p], len(class_names), str(labs))
            if len(labels) != len(raw):
                raise StudyError(f"{imgs} has {len(raw)} images but {labs} has {len(labels)} labels; re-download them")
            out[p] = (_resize_array(raw, size, str(imgs)), labels, [f"{p}/{i}" for i in range(len(labels))])
        return out

    return Scan(class_names, h.hexdigest(), decode)


#: format -> reader; the registry names the format, this table picks the code (no if/else on names).
READERS: dict[str, Callable[[DatasetSpec, Path], Scan]] = {
    "image_folder": _scan_image_folder,
    "medmnist_npz": _scan_npz,
    "idx_gz": _scan_idx,
}


# --------------------------------------------------------------------------------------------------------------
# The decoded cache
# --------------------------------------------------------------------------------------------------------------


def _cache_key(spec: DatasetSpec, fingerprint: str) -> str:
    h = hashlib.sha256(f"{LOADER_VERSION}|{spec.format}|{spec.parts}|{fingerprint}".encode()).hexdigest()
    return h


def _read_cache(folder: Path, parts: Sequence[str]) -> tuple[list[str], Decoded, list[str]] | None:
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("parts") != list(parts):
            return None
        out: Decoded = {}
        for i, part in enumerate(parts):
            images = np.load(folder / f"part{i}_images.npy", allow_pickle=False)
            labels = np.load(folder / f"part{i}_labels.npy", allow_pickle=False)
            ids = json.loads((folder / f"part{i}_ids.json").read_text())
            out[part] = (images, labels, ids)
        return list(meta["class_names"]), out, list(meta.get("skipped", []))
    except (OSError, ValueError, KeyError):
        return None  # unreadable cache: rebuild it


def _write_cache(
    folder: Path, parts: Sequence[str], class_names: list[str], decoded: Decoded, source: str, skipped: list[str]
) -> None:
    """Write to a temporary sibling, then rename: readers see a complete cache folder or none."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(folder.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        for i, part in enumerate(parts):
            images, labels, ids = decoded[part]
            np.save(tmp / f"part{i}_images.npy", images, allow_pickle=False)
            np.save(tmp / f"part{i}_labels.npy", labels, allow_pickle=False)
            (tmp / f"part{i}_ids.json").write_text(json.dumps(ids))
        meta = {"parts": list(parts), "class_names": class_names, "source": source, "loader": LOADER_VERSION,
                "skipped": skipped}  # fmt: skip
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, folder)
        except OSError:
            if _read_cache(folder, parts) is None:  # a damaged cache, not a concurrent writer's: replace it
                shutil.rmtree(folder, ignore_errors=True)
                os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sweep_stale(parent: Path, max_age_s: float = 24 * 3600) -> None:
    """Remove temporary cache folders left by killed processes (older than a day, so never a live writer's)."""
    now = time.time()
    for entry in parent.glob(".*.tmp-*"):
        try:
            if now - entry.stat().st_mtime > max_age_s:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------------------------


def _concat(decoded: Decoded, parts: Sequence[str], size: int) -> ImageSet:
    if not parts:
        return ImageSet(np.empty((0, size, size, 3), np.uint8), np.empty(0, np.int64), [])
    images = np.concatenate([decoded[p][0] for p in parts]) if len(parts) > 1 else decoded[parts[0]][0]
    labels = np.concatenate([decoded[p][1] for p in parts]) if len(parts) > 1 else decoded[parts[0]][1]
    ids = [i for p in parts for i in decoded[p][2]]
    return ImageSet(images, labels.astype(np.int64, copy=False), ids)


def _group_array(spec: DatasetSpec, pool_ids: list[str], test_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Group ids of pool and test images from ``spec.group_pattern``, numbered over both (sorted group names).

    A pool image the pattern does not match is an error (a wrong pattern would silently disable the safety);
    an unmatched test image (an official test set named differently) is a group of its own.
    """
    names: list[str] = []
    for i in pool_ids:
        g = spec.group_of(i)
        if g is None:
            raise StudyError(
                f"dataset {spec.name!r}: image {i!r} does not match group_pattern {spec.group_pattern!r}; "
                "fix the pattern or the file name"
            )
        names.append(g)
    names += [spec.group_of(i) or f"image:{i}" for i in test_ids]
    _, gid = np.unique(np.asarray(names, dtype=object).astype(str), return_inverse=True)
    gid = gid.astype(np.int64)
    return gid[: len(pool_ids)], gid[len(pool_ids) :]


def default_download_dir(data_dirs: list[Path]) -> Path:
    """Where a missing dataset is downloaded: the first existing, writable data directory, else the first one."""
    for d in data_dirs:
        if d.exists() and os.access(d, os.W_OK):
            return d
    return data_dirs[0]


def resolve_root(
    spec: DatasetSpec,
    data_dirs: list[Path],
    *,
    download_dir: Path | None = None,
    allow_download: bool = True,
) -> Path:
    """The dataset's folder on disk, downloading it when missing (see ``study.data.download.fetch``)."""
    from study.data.download import fetch, locate

    dirs = list(data_dirs)
    found = locate(spec, dirs)
    if found is not None:
        return found
    return fetch(spec, dirs, download_dir or default_download_dir(dirs), allow_download=allow_download)


def load_dataset(
    name_or_spec: str | DatasetSpec,
    image_size: int,
    data_dirs: list[Path],
    cache_dir: Path,
    *,
    download_dir: Path | None = None,
    allow_download: bool = True,
    use_cache: bool = True,
) -> LoadedDataset:
    """Load a registered dataset at ``image_size``: pool and test sets as uint8 RGB arrays.

    ``data_dirs`` and ``cache_dir`` come from the entry point (``study.config``); a dataset found nowhere is
    downloaded when it has a download and ``allow_download``. ``use_cache=False`` decodes without reading or
    writing the cache.
    """
    spec = get_dataset(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    lo, hi = IMAGE_SIZES
    if isinstance(image_size, bool) or not isinstance(image_size, int | np.integer) or not lo <= image_size <= hi:
        raise StudyError(f"image_size must be an integer between {lo} and {hi}, got {image_size!r}")
    size = int(image_size)
    root = resolve_root(spec, data_dirs, download_dir=download_dir, allow_download=allow_download)
    scan = READERS[spec.format](spec, root)
    checksum = _cache_key(spec, scan.fingerprint)
    if spec.class_names and list(spec.class_names) != scan.class_names:
        raise StudyError(
            f"dataset {spec.name!r} at {root} has classes {scan.class_names}, expected {list(spec.class_names)}; "
            "the folder holds a different dataset or version"
        )
    parts = list(spec.parts)
    cached = None
    folder = Path(cache_dir) / "decoded" / f"{spec.name}-{size}-{checksum[:12]}"
    if use_cache:
        cached = _read_cache(folder, parts)
    if cached is not None:
        class_names, decoded, skipped = cached
        if skipped:
            log.info("dataset %r: %d unreadable images in %s are skipped: %s", spec.name, len(skipped), root,
                        ", ".join(skipped))  # fmt: skip
    else:
        class_names, decoded = scan.class_names, scan.decode(size)
        skipped = list(scan.skipped)
        if use_cache:
            # a read-only or full cache disk must not stop the study; it only costs speed
            with contextlib.suppress(OSError):
                _write_cache(folder, parts, class_names, decoded, str(root), skipped)
    if spec.test_split == "official":
        pool = _concat(decoded, spec.pool_parts, size)
        test = _concat(decoded, [str(spec.test_part)], size)
        if spec.group_pattern is not None:
            pool.groups, test.groups = _group_array(spec, pool.ids, test.ids)
    else:
        everything = _concat(decoded, spec.pool_parts, size)
        if spec.group_pattern is not None:
            everything.groups = _group_array(spec, everything.ids, [])[0]
        pool_idx, test_idx = fixed_test_split(everything.labels, spec.test_fraction, spec.split_seed, everything.groups)
        pool, test = everything.subset(pool_idx), everything.subset(test_idx)
    allowed = [tuple(c) for c in (spec.expected_counts, spec.full_counts) if c is not None]
    if allowed and (len(pool), len(test)) not in allowed:
        expected = " or ".join(f"{c[0]} / {c[1]}" for c in allowed)
        raise StudyError(
            f"dataset {spec.name!r} at {root} has {len(pool)} pool / {len(test)} test images, expected "
            f"{expected}; the copy is incomplete or another version: re-download it (delete that folder)"
        )
    return LoadedDataset(
        name=spec.name,
        domain=spec.domain,
        class_names=list(class_names),
        pool=pool,
        test=test,
        source_checksum=checksum,
        spec=spec,
        skipped=tuple(skipped),
    )


def fingerprint_dataset(spec: DatasetSpec, data_dirs: list[Path]) -> str | None:
    """The content fingerprint ``load_dataset`` gives as ``source_checksum``, without decoding anything.

    None when the dataset is not on disk (nothing is downloaded for a fingerprint).
    """
    from study.data.download import locate

    root = locate(spec, list(data_dirs))
    if root is None:
        return None
    return _cache_key(spec, READERS[spec.format](spec, root).fingerprint)
