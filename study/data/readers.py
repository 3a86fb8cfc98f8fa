"""Read datasets in their distributed formats and decode their images to uint8 arrays.

Formats: image folders (one sub-folder per class, any size, JPEG/PNG/..., any colour mode), MedMNIST
``.npz`` and MNIST-style IDX ``.gz``. Every image comes out RGB uint8, resized to a square ``image_size``
with bilinear filtering and no aspect preservation, as ``tf.keras.utils.image_dataset_from_directory`` does,
so a model sees the same pixels whichever path loaded them. A reader's scan is cheap (lists files, computes
the fingerprint the decoded cache is keyed by); its decode does the heavy work.

Every input problem is a one-line ``StudyError`` naming the file and the fix. One exception, so that a stray
broken photo does not sink a whole folder: an image folder with a handful of unreadable images (at most
``UNREADABLE_SKIP_MAX`` files and ``UNREADABLE_SKIP_SHARE`` of the folder: 0-byte, truncated, not really an
image) loads without them, with a warning in the log and their names in ``Scan.skipped``; more than that is
an error naming the first few. numpy + Pillow only; ``study.data.loaders`` puts readers, cache and splits together.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from study.data.datasets import IDX_IMAGES, IDX_LABELS, DatasetSpec
from study.data.download import file_digest
from study.errors import StudyError

#: Bump when decoding changes (resampling, colour handling): it invalidates every decoded cache.
LOADER_VERSION = "1"

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
#: Files that operating systems drop into folders; skipped like hidden files.
IGNORED_FILES = frozenset({"thumbs.db", "desktop.ini"})
#: An image folder may hold this many unreadable images, and at most this share of its files; they are skipped.
UNREADABLE_SKIP_MAX = 5
UNREADABLE_SKIP_SHARE = 0.10

log = logging.getLogger("study.data.readers")


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


_WARNED: set[tuple[str, str, tuple[str, ...]]] = set()
"""The skipped-image warnings this process has printed, so each is said once."""


def _allow_unreadable(dataset: str, root: Path, bad: dict[str, str], total: int) -> list[str]:
    """The unreadable images to skip (a handful, logged), or a one-line error naming the first few (too many)."""
    if not bad:
        return []
    names = sorted(bad)
    if len(names) <= UNREADABLE_SKIP_MAX and len(names) <= UNREADABLE_SKIP_SHARE * total:
        said = (dataset, str(root), tuple(names))
        if said not in _WARNED:  # a folder is scanned more than once per command (registration, then loading)
            _WARNED.add(said)
            log.warning("dataset %r: skipped %d unreadable image%s in %s: %s", dataset, len(names),
                        "" if len(names) == 1 else "s", root, ", ".join(names))  # fmt: skip
        return names
    more = f"; also {', '.join(names[1:4])}{' ...' if len(names) > 4 else ''}" if len(names) > 1 else ""
    raise StudyError(
        f"dataset {dataset!r}: {len(names)} of {total} images in {root} cannot be read ({names[0]}: "
        f"{bad[names[0]]}{more}); delete or "
        f"replace them (up to {UNREADABLE_SKIP_MAX} unreadable images, at most {UNREADABLE_SKIP_SHARE:.0%} of a "
        "folder, are skipped with a warning)"
    )


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

    return Scan(class_names, file_digest(path, "sha256"), decode)


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
            h.update(f"{f.name}\t{file_digest(f, 'sha256')}\n".encode())
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
