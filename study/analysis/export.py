"""Export the results store to files pandas reads: ``python -m study.analysis.export --format parquet|csv``.

Why a separate step: analysis and plotting read these files and never write back to the store, so a failed
plot can never lose a result (benchopt's rule). Files are written to a temporary name and renamed, so a
reader never sees half a file and a crash leaves the previous export intact.

JSON columns (``metrics``, ``curves``, ``params``, ``provenance``, ``similarity``) are written as JSON
strings; decode them with ``df["metrics"].map(json.loads, na_action="ignore")`` (empty values are NaN).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from study.cli_support import add_verbose_flag, quiet_tensorflow
from study.engine.store import JSON_COLUMNS, ResultsStore, RunStatus, default_url
from study.errors import StudyError

if TYPE_CHECKING:
    import pandas as pd

Format = Literal["parquet", "csv"]
FORMATS: tuple[str, ...] = ("parquet", "csv")
DEFAULT_OUT = Path("results") / "export"
_JSON_NAMES = (*(c.name for c in JSON_COLUMNS), "similarity")


def _encode_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, allow_nan=False)


def _encoded(frame: pd.DataFrame) -> pd.DataFrame:
    """JSON columns as strings: Parquet and CSV hold scalars, and a string round-trips exactly."""
    frame = frame.copy()
    for name in _JSON_NAMES:
        if name in frame.columns:
            frame[name] = frame[name].map(_encode_json).astype(object)
    return frame


def _write_atomic(frame: pd.DataFrame, path: Path, fmt: Format) -> None:
    """Write beside the target, then rename over it (``os.replace`` is atomic on one filesystem)."""
    # Not mkstemp: its 0600 mode would survive the rename; a unique name opened normally honours the umask.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False, engine="pyarrow")
        else:
            frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_table(folder: Path, table: str) -> pd.DataFrame | None:
    """``table`` of an export folder (Parquet preferred, else CSV), or None when it has neither."""
    import pandas as pd

    for ext, reader in (("parquet", pd.read_parquet), ("csv", pd.read_csv)):
        path = folder / f"{table}.{ext}"
        if path.is_file():
            try:
                return reader(path)
            except Exception as error:  # pyarrow and the CSV parser raise many types; all mean "unreadable"
                raise StudyError(f"cannot read {path}: {str(error).splitlines()[0]}") from None
    return None


def export(
    store: ResultsStore, out_dir: str | os.PathLike[str], fmt: Format = "parquet", status: str | None = None
) -> dict[str, tuple[Path, int]]:
    """Write ``runs.<fmt>`` and ``datasets.<fmt>`` into ``out_dir``; returns ``{table: (path, rows)}``."""
    if fmt not in FORMATS:
        raise StudyError(f"unknown export format {fmt!r}; known formats: {', '.join(FORMATS)}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StudyError(f"cannot create export folder {out}: {error.strerror}; pass another --out") from None
    written: dict[str, tuple[Path, int]] = {}
    for table, frame in (("runs", store.to_frame(status)), ("datasets", store.datasets_frame())):
        path = out / f"{table}.{fmt}"
        try:
            _write_atomic(_encoded(frame), path, fmt)
        except OSError as error:
            raise StudyError(f"cannot write {path}: {error.strerror or error}; pass another --out") from None
        written[table] = (path, len(frame))
    return written


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m study.analysis.export",
        description="Export the results store to Parquet or CSV for pandas (JSON columns as JSON strings).",
    )
    parser.add_argument("--format", choices=FORMATS, default="parquet", help="file format (default: parquet)")
    parser.add_argument(
        "--store", metavar="URL", default=None, help="results store URL (default: sqlite:///results/study.db)"
    )
    parser.add_argument(
        "--out", metavar="DIR", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--status", choices=[s.value for s in RunStatus], default=None, help="only rows with this status"
    )
    add_verbose_flag(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; a StudyError becomes one line on stderr and exit status 2."""
    args = _parser().parse_args(argv)
    quiet_tensorflow(args.verbose)
    try:
        url = args.store or default_url()
        with ResultsStore(url, create=False) as store:  # a typo'd path must not silently export an empty new store
            written = export(store, args.out, args.format, args.status)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path, n in written.values():
        print(f"wrote {n} rows to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
