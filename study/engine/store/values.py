"""Python values to column values and back: type coercion, JSON-safe data, result splitting, pandas frames.

pandas is imported only when a frame is built.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from study.engine.store.schema import (
    DATETIME_COLUMNS,
    JSON_NAMES,
    METRIC_COLUMNS,
    METRIC_NAMES,
    NOT_RESULT,
    ColumnSpec,
)
from study.errors import StudyError

if TYPE_CHECKING:
    import pandas as pd


def _plain_scalar(value: Any) -> Any:
    """A numpy scalar as the Python scalar it prints as (float32 0.9 -> 0.9, not 0.8999999761581421)."""
    dtype = getattr(value, "dtype", None)
    if dtype is None or getattr(value, "ndim", 1) != 0:
        return value
    if dtype.kind == "f" and dtype.itemsize < 8:
        return float(str(value))
    return value.item()


def coerce(spec: ColumnSpec, value: Any, where: str) -> Any:
    """Plain Python value of ``spec.type`` (numpy scalars included); NaN/inf floats become NULL."""
    if value is None:
        return None
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        value = _plain_scalar(value)
    try:
        if spec.type == "float":
            if isinstance(value, bool):
                raise TypeError
            f = float(value)
            return f if math.isfinite(f) else None
        if spec.type == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if spec.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.strip().lower() in ("true", "yes", "1")
            raise TypeError
        return str(value)
    except (TypeError, ValueError):
        raise StudyError(f"{where} field {spec.name!r} must be {spec.type}, got {value!r}") from None


def jsonable(obj: Any, path: str = "result") -> Any:
    """Plain JSON data: numpy values become Python ones, NaN/inf become null (PostgreSQL rejects NaN)."""
    if obj is None or isinstance(obj, str | bool | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v, f"{path}.{k}") for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return jsonable(obj.value, path)
    if getattr(obj, "dtype", None) is not None and isinstance(getattr(obj, "ndim", None), int):  # numpy
        if obj.ndim == 0:
            return jsonable(_plain_scalar(obj), path)
        return [jsonable(v, f"{path}[{i}]") for i, v in enumerate(obj)]
    tolist = getattr(obj, "tolist", None)  # numpy arrays, pandas series
    if callable(tolist):
        return jsonable(tolist(), path)
    raise TypeError(f"{path} is a {type(obj).__name__}, which cannot be stored as JSON")


def split_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for a result dict: flattened metrics, the JSON columns, and ``metrics`` for the rest.

    A nested ``result["metrics"]`` mapping is merged with the top level first, so both
    ``{"accuracy": .9}`` and ``{"metrics": {"accuracy": .9}}`` land in the ``accuracy`` column. Keys naming
    cell columns (``dataset``, ``seed``, ...) are dropped: the row already has them from the claim.
    """
    merged: dict[str, Any] = {}
    nested = result.get("metrics")
    if isinstance(nested, Mapping):
        merged.update(nested)
    merged.update({k: v for k, v in result.items() if k != "metrics"})
    values: dict[str, Any] = {c.name: None for c in METRIC_COLUMNS}
    extra: dict[str, Any] = {}
    for name, value in merged.items():
        if name in METRIC_NAMES:
            continue
        if name in JSON_NAMES:
            values[name] = jsonable(value, name)
        elif name not in NOT_RESULT:
            extra[name] = value
    for spec in METRIC_COLUMNS:
        values[spec.name] = coerce(spec, merged.get(spec.name), "result")
    values["metrics"] = jsonable(extra, "metrics") if extra else None
    for name in ("curves", "params", "provenance"):
        values.setdefault(name, None)
    return values


def rows_frame(rows: list[dict[str, Any]], columns: tuple[str, ...], specs: tuple[ColumnSpec, ...]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(columns))
    dtypes = {"int": "Int64", "float": "float64", "bool": "boolean"}
    for spec in specs:
        if spec.type in dtypes:
            frame[spec.name] = frame[spec.name].astype(dtypes[spec.type])
    for name in ("id", "attempts"):
        if name in frame:
            frame[name] = frame[name].astype("Int64")
    for name in DATETIME_COLUMNS:
        if name in frame:
            frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame
