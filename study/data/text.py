"""Text datasets: CSV files with ``text`` and ``label`` columns, read into a ``TextSet`` the cell runner can use.

A text dataset is a ``DatasetSpec`` row with ``modality="text"`` and ``format="text_csv"``: its parts are CSV file
stems in the dataset folder (``train``/``val`` for the pool, ``test`` for the official test split, as in
``../shared/datapack/text``). Labels are either 0-based indices into the folder's ``classes.txt`` (the data pack's
layout) or, without ``classes.txt``, class names (a user's ``tickets.csv``; classes are then sorted by name).

Splits never share a text: a test row whose exact text also occurs in the pool is removed from the test side
(``TextSplits.dropped_duplicates`` counts them), and every pool text carries a group id naming its text, so the
train/validation carving (``study.data.sampling`` with groups) keeps identical texts on one side too.

Every input problem is a one-line ``StudyError`` (a missing column, an empty text, an unknown label, one class).
No TensorFlow here; CSV files are small enough to read on every load (no decoded cache).
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from study.data.datasets import DatasetSpec, register_dataset
from study.data.download import file_digest
from study.data.loaders import LoadedDataset, resolve_root
from study.data.sampling import fixed_test_split
from study.errors import StudyError

#: Bump when reading or de-duplication changes: it is part of every text dataset's fingerprint.
TEXT_LOADER_VERSION = "1"
TEXT_COLUMN, LABEL_COLUMN = "text", "label"
CLASSES_FILE = "classes.txt"

log = logging.getLogger("study.data.text")


@dataclass
class TextSet:
    """Texts (N,) object array of str, labels (N,) int64, a stable id per text (``part:row``) and its group.

    The text analogue of ``study.data.loaders.ImageSet``: ``labels``, ``ids``, ``groups`` and ``subset`` mean the
    same, so sampling and the cell runner treat both alike. ``groups`` numbers distinct texts (over pool and test
    together), so identical texts always land on one side of a split.
    """

    texts: np.ndarray
    labels: np.ndarray
    ids: list[str]
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, idx: np.ndarray | Sequence[int]) -> TextSet:
        idx = np.asarray(idx, dtype=np.int64)
        groups = None if self.groups is None else self.groups[idx]
        return TextSet(self.texts[idx], self.labels[idx], [self.ids[i] for i in idx], groups)


def csv_path(root: Path, part: str) -> Path:
    return root / f"{part}.csv"


def _read_classes(root: Path, name: str) -> list[str] | None:
    path = root / CLASSES_FILE
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise StudyError(f"dataset {name!r}: {path} is empty; list one class name per line")
    return names


def read_csv(path: Path, dataset: str) -> tuple[list[str], list[str]]:
    """(texts, raw labels) of one CSV file; a file without the columns, or with an empty text, is an error."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            columns = [c.strip().lower() for c in (reader.fieldnames or [])]
            if TEXT_COLUMN not in columns or LABEL_COLUMN not in columns:
                missing = [c for c in (TEXT_COLUMN, LABEL_COLUMN) if c not in columns]
                raise StudyError(
                    f"dataset {dataset!r}: {path} has no {' or '.join(repr(c) for c in missing)} column (columns: "
                    f"{columns or 'none'}); write a header line 'text,label' and one row per text"
                )
            fields = dict(zip(columns, reader.fieldnames or [], strict=False))
            texts, labels = [], []
            for row in reader:
                text, label = row.get(fields[TEXT_COLUMN]), row.get(fields[LABEL_COLUMN])
                line = reader.line_num
                if text is None or not text.strip():
                    raise StudyError(
                        f"dataset {dataset!r}: {path} line {line} has an empty text; remove the row or fill it in"
                    )
                if label is None or not label.strip():
                    raise StudyError(f"dataset {dataset!r}: {path} line {line} has no label; give every row a label")
                texts.append(text)
                labels.append(label.strip())
    except FileNotFoundError:
        raise StudyError(f"dataset {dataset!r}: {path} does not exist; check the dataset's layout") from None
    except UnicodeDecodeError:
        raise StudyError(f"dataset {dataset!r}: {path} is not UTF-8 text; save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise StudyError(f"dataset {dataset!r}: {path} is not a valid CSV file ({exc})") from None
    if not texts:
        raise StudyError(f"dataset {dataset!r}: {path} has no rows; add texts with labels")
    return texts, labels


def _label_ids(raw: list[str], classes: list[str] | None, path: Path, dataset: str) -> np.ndarray:
    if classes is None:
        raise AssertionError("class names are resolved before labels")  # pragma: no cover
    index = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(raw), dtype=np.int64)
    for i, value in enumerate(raw):
        if value in index:
            out[i] = index[value]
        elif value.isdigit() and int(value) < len(classes):
            out[i] = int(value)
        else:
            raise StudyError(
                f"dataset {dataset!r}: {path} has label {value!r}, which is not one of its {len(classes)} classes "
                f"(a 0-based index into {CLASSES_FILE} or a class name)"
            )
    return out


def text_fingerprint(spec: DatasetSpec, root: Path) -> str:
    """Content checksum of the dataset's files (every CSV part and classes.txt), the reader's version included."""
    h = hashlib.sha256(f"text_csv|v{TEXT_LOADER_VERSION}|{spec.test_split}|{spec.split_seed}".encode())
    files = [csv_path(root, p) for p in spec.parts] + [root / CLASSES_FILE]
    for path in files:
        if path.is_file():
            h.update(f"{path.name}\t{file_digest(path, 'sha256')}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class TextSplits:
    """What de-duplication did: test rows dropped because their text is in the pool, and how many texts that is."""

    dropped_duplicates: int
    duplicate_texts: int


def read_text_dataset(spec: DatasetSpec, root: Path) -> tuple[list[str], TextSet, TextSet, TextSplits]:
    """(class names, pool, test, de-duplication counts) of a text dataset's folder."""
    parsed = {p: read_csv(csv_path(root, p), spec.name) for p in spec.parts}
    classes = _read_classes(root, spec.name)
    if classes is None:
        found = sorted({label for _, labels in parsed.values() for label in labels})
        classes = sorted(found, key=int) if all(v.isdigit() for v in found) else found
    if len(classes) < 2:
        raise StudyError(
            f"dataset {spec.name!r}: {root} has one class ({classes[0] if classes else 'none'}); a classifier needs "
            "at least two labels"
        )

    def joined(parts: Sequence[str]) -> TextSet:
        texts, labels, ids = [], [], []
        for p in parts:
            t, raw = parsed[p]
            texts += t
            labels.append(_label_ids(raw, classes, csv_path(root, p), spec.name))
            ids += [f"{p}:{i}" for i in range(len(t))]
        arr = np.empty(len(texts), dtype=object)
        arr[:] = texts
        return TextSet(arr, np.concatenate(labels) if labels else np.empty(0, np.int64), ids)

    if spec.test_split == "official":
        pool, test = joined(spec.pool_parts), joined([str(spec.test_part)])
    else:
        everything = joined(spec.pool_parts)
        everything.groups = _text_groups(everything.texts)
        if np.unique(everything.groups).size < 2:
            raise StudyError(f"dataset {spec.name!r}: {root} holds a single distinct text; add more texts")
        pool_idx, test_idx = fixed_test_split(everything.labels, spec.test_fraction, spec.split_seed, everything.groups)
        pool, test = everything.subset(pool_idx), everything.subset(test_idx)
    seen = set(pool.texts.tolist())
    crossing = np.fromiter((t in seen for t in test.texts), dtype=bool, count=len(test))
    splits = TextSplits(int(crossing.sum()), len({t for t, c in zip(test.texts, crossing, strict=True) if c}))
    test = test.subset(np.flatnonzero(~crossing))
    gid = _text_groups(np.concatenate([pool.texts, test.texts]))
    pool.groups, test.groups = gid[: len(pool)], gid[len(pool) :]
    return classes, pool, test, splits


def _text_groups(texts: np.ndarray) -> np.ndarray:
    """One id per distinct text (identical texts share it)."""
    _, gid = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
    return gid.astype(np.int64)


def load_text_dataset(
    spec: DatasetSpec, data_dirs: list[Path], *, download_dir: Path | None = None, allow_download: bool = True
) -> LoadedDataset:
    """A text dataset's pool and de-duplicated test set as ``TextSet``s inside a ``LoadedDataset``."""
    root = resolve_root(spec, data_dirs, download_dir=download_dir, allow_download=allow_download)
    classes, pool, test, splits = read_text_dataset(spec, root)
    if splits.dropped_duplicates:
        log.info("dataset %r: %d test rows (%d distinct texts) also in the pool are left out of the test set",
                 spec.name, splits.dropped_duplicates, splits.duplicate_texts)  # fmt: skip
    if spec.class_names and list(spec.class_names) != classes:
        raise StudyError(
            f"dataset {spec.name!r} at {root} has classes {classes}, expected {list(spec.class_names)}; the folder "
            "holds a different dataset or version"
        )
    if spec.expected_counts is not None and (len(pool), len(test)) != tuple(spec.expected_counts):
        raise StudyError(
            f"dataset {spec.name!r} at {root} has {len(pool)} pool / {len(test)} test texts after removing "
            f"{splits.dropped_duplicates} test rows also in the pool, expected {spec.expected_counts[0]} / "
            f"{spec.expected_counts[1]}; the copy is incomplete or another version"
        )
    return LoadedDataset(
        name=spec.name,
        domain=spec.domain,
        class_names=classes,
        pool=pool,  # type: ignore[arg-type]  # a TextSet: same fields the runner reads
        test=test,  # type: ignore[arg-type]
        source_checksum=text_fingerprint(spec, root),
        spec=spec,
    )


def register_text_csv(name: str, path: str | Path, domain: str = "text", test_fraction: float = 0.2,
                      *, seed: int = 0) -> DatasetSpec:  # fmt: skip
    """Make a user's CSV file (``text,label`` columns; labels are class names) a text dataset.

    A fixed stratified ``test_fraction`` (seed ``seed``) of distinct texts is held out as the test set.
    """
    file = Path(path).expanduser().resolve()
    if not file.is_file() or file.suffix.lower() != ".csv":
        raise StudyError(f"text file {file} is not a .csv file; pass a CSV with 'text' and 'label' columns")
    spec = DatasetSpec(
        name=name, domain=domain, modality="text", format="text_csv", folder=file.parent.name,
        pool_parts=(file.stem,), test_split="fixed_fraction", test_fraction=test_fraction, split_seed=seed,
        root=file.parent, homepage=str(file), description=f"user text CSV at {file}",
        checksum_note="a local file: nothing to download; the loader fingerprints it",
    )  # fmt: skip
    return register_dataset(spec)

