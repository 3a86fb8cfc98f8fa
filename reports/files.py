"""Writing the report's files: the exported tables it links to, and atomic writes so no reader sees half a file."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from study.errors import StudyError

# ----------------------------------------------------------------------------------------------------------
# Downloads
# ----------------------------------------------------------------------------------------------------------


def _write_frame(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """JSON columns as JSON text (like ``study.analysis.export``), written beside the target and renamed over it."""
    frame = frame.copy()
    for col in frame.columns:
        if frame[col].map(lambda v: isinstance(v, Mapping | list)).any():
            frame[col] = frame[col].map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, Mapping | list) else v)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        frame.to_parquet(tmp, index=False) if fmt == "parquet" else frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def export_tables(store_or_frame: Any, export_dir: Path, report_dir: Path) -> dict[str, Any]:
    """Write runs/datasets as CSV and Parquet into ``export_dir``; links are relative to the report's folder."""
    links = []
    try:
        export_dir.mkdir(parents=True, exist_ok=True)
        for fmt in ("csv", "parquet"):
            if isinstance(store_or_frame, pd.DataFrame):
                path = export_dir / f"runs.{fmt}"
                _write_frame(store_or_frame, path, fmt)
                written = {"runs": (path, len(store_or_frame))}
            else:
                from study.analysis.export import export

                written = export(store_or_frame, export_dir, fmt)  # type: ignore[arg-type]
            for name, (path, n) in written.items():
                href = Path(os.path.relpath(Path(path).resolve(), report_dir.resolve())).as_posix()
                links.append({"table": name, "format": fmt.upper() if fmt == "csv" else "Parquet", "href": href,
                              "rows": n})  # fmt: skip
    except (StudyError, OSError, ValueError, ImportError) as exc:
        return {"links": links, "error": f"the tables could not be exported to {export_dir}: {exc}"}
    return {"links": links, "error": ""}


def write_atomic(path: Path, text: str) -> None:
    """Write beside the target and rename over it, so a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
