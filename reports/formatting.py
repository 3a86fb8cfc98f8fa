"""Formatting for the report's template: tables whose cells carry display text and a sort value, durations.

Pure functions of their inputs (no store, no figures): ``reports.context`` uses them to turn frames into what
the template shows, and the template only lays them out.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

# ----------------------------------------------------------------------------------------------------------
# Tables as template data: every cell has display text and, for numbers, a raw value to sort by
# ----------------------------------------------------------------------------------------------------------


def _cell(value: Any, digits: int = 3) -> dict[str, Any]:
    if value is None or (np.ndim(value) == 0 and not isinstance(value, str) and pd.isna(value)):
        return {"text": "", "sort": None, "num": False}
    if isinstance(value, bool | np.bool_):
        return {"text": "yes" if value else "no", "sort": None, "num": False}
    if isinstance(value, int | np.integer):
        return {"text": str(int(value)), "sort": int(value), "num": True}
    if isinstance(value, float | np.floating):
        f = float(value)
        if not math.isfinite(f):
            return {"text": str(f), "sort": None, "num": False}
        text = f"{f:.{digits}f}" if abs(f) < 1e5 or digits == 0 else f"{f:.4g}"
        return {"text": text, "sort": f, "num": True}
    if isinstance(value, pd.Timestamp | dt.datetime):
        return {"text": value.strftime("%Y-%m-%d %H:%M:%S"), "sort": None, "num": False}
    if isinstance(value, Mapping | list | tuple):
        return {"text": json.dumps(value, sort_keys=True, default=str), "sort": None, "num": False}
    return {"text": str(value), "sort": None, "num": False}


_FRACTIONS = ("accuracy", "gain", "share", "auc", "margin", "ci_", "f1", "loss", "similarity", "distance")


def table(
    frame: pd.DataFrame,
    table_id: str,
    caption: str,
    key: Callable[[Mapping[str, Any]], str] | None = None,
    row_class: Callable[[Mapping[str, Any]], str] | None = None,
    digits: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A frame as a sortable table: columns, and rows of cells with display text and sort values."""
    digits = dict(digits or {})
    for col in frame.columns:  # counts stored as floats (e.g. after a merge) read better as integers
        if col in digits or frame[col].dtype.kind != "f" or any(w in str(col) for w in _FRACTIONS):
            continue
        values = frame[col].dropna()
        if len(values) and (values % 1 == 0).all():
            digits[col] = 0
    rows = []
    for rec in frame.to_dict("records"):
        rows.append({
            "key": key(rec) if key else "",
            "cls": row_class(rec) if row_class else "",
            "cells": [_cell(rec[c], digits.get(c, 3)) for c in frame.columns],
        })  # fmt: skip
    return {"id": table_id, "caption": caption, "columns": [str(c) for c in frame.columns], "rows": rows}


def duration(seconds: float | None) -> str:
    """Seconds as a readable span: seconds under 2 minutes, minutes under 2 hours, else hours."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    minutes = seconds / 60
    return f"{seconds:.0f} s" if seconds < 120 else (f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h")

