"""The on-disk decoded-image cache: decoding thousands of JPEGs takes far longer than the experiments that use them.

Every run of the study reloads the same dataset at the same size, so decoded arrays are stored as ``.npy``
under ``<cache>/decoded/<name>-<size>-<fingerprint12>/``; the key (``cache_key``) covers the source files
(relative path and size, or the bytes of an npz/IDX file, as a reader's scan fingerprints them) and
``LOADER_VERSION``, so a changed dataset or loader never reads a stale cache. The cache folder is written
under a temporary name and renamed, so a killed process never leaves a half-written cache that a later run
would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from study.data.datasets import DatasetSpec
from study.data.readers import LOADER_VERSION, Decoded


def cache_key(spec: DatasetSpec, fingerprint: str) -> str:
    h = hashlib.sha256(f"{LOADER_VERSION}|{spec.format}|{spec.parts}|{fingerprint}".encode()).hexdigest()
    return h


def read_cache(folder: Path, parts: Sequence[str]) -> tuple[list[str], Decoded, list[str]] | None:
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


def write_cache(
    folder: Path, parts: Sequence[str], class_names: list[str], decoded: Decoded, source: str, skipped: list[str]
) -> None:
    """Write to a temporary sibling, then rename: readers see a complete cache folder or none."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(folder.parent)
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
            if read_cache(folder, parts) is None:  # a damaged cache, not a concurrent writer's: replace it
                shutil.rmtree(folder, ignore_errors=True)
                os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sweep_stale(parent: Path, max_age_s: float = 24 * 3600) -> None:
    """Remove temporary cache folders left by killed processes (older than a day, so never a live writer's)."""
    now = time.time()
    for entry in parent.glob(".*.tmp-*"):
        try:
            if now - entry.stat().st_mtime > max_age_s:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass
