"""Load exported results back into a store: ``python -m study.analysis.restore DIR [DIR ...] --store URL``.

Why: a study longer than one sitting runs in parts, and each part is exported and committed (``results/reference/``)
as soon as it finishes; the SQLite file itself is not committed and may be gone on the next machine. Restoring the
committed exports into a store makes the sweep skip every finished cell (exactly-once), so the next part resumes
where the last commit left off, and several exports (parts run on different machines) merge into one store that
the analysis, the report and a final export read as one study. Existing rows always win: nothing already in the
store is overwritten, and restoring the same folder twice inserts nothing the second time.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from study.analysis.export import read_table
from study.cli_support import add_verbose_flag, quiet_tensorflow
from study.engine.store import JSON_COLUMNS, ResultsStore, default_url
from study.engine.store.schema import DATETIME_COLUMNS
from study.errors import StudyError

_JSON_NAMES = {c.name for c in JSON_COLUMNS}


def _decoded(value: object) -> object:
    return json.loads(value) if isinstance(value, str) else None


def restore(store: ResultsStore, folder: str | Path) -> tuple[int, int, int]:
    """Insert an export folder's complete runs and dataset scores; returns (runs inserted, runs read, datasets)."""
    src = Path(folder)
    runs = read_table(src, "runs")
    if runs is None:
        raise StudyError(f"{src} holds no runs.parquet or runs.csv; pass a folder written by python -m study.export")
    for name in _JSON_NAMES & set(runs.columns):
        runs[name] = runs[name].map(_decoded)
    for name in set(DATETIME_COLUMNS) & set(runs.columns):  # CSV holds them as text
        runs[name] = pd.to_datetime(runs[name], utc=True, format="ISO8601")
    inserted = store.import_rows(runs.to_dict("records"))
    sims = read_table(src, "datasets")
    n_sets = 0
    if sims is not None:
        for row in sims.to_dict("records"):
            domain = row.get("domain")
            store.put_dataset(
                str(row["name"]),
                domain=domain if isinstance(domain, str) else None,
                similarity=_decoded(row.get("similarity")) or {},
            )
            n_sets += 1
    return inserted, len(runs), n_sets


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; a StudyError becomes one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(
        prog="python -m study.analysis.restore",
        description="Load exported runs (runs.parquet/csv, datasets.*) into a results store; existing rows win.",
    )
    parser.add_argument("folders", nargs="+", type=Path, metavar="DIR", help="export folders, e.g. results/reference")
    parser.add_argument("--store", metavar="URL", help="results store URL (default: sqlite:///results/study.db)")
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    try:
        missing = [str(f) for f in args.folders if not f.is_dir()]
        if missing:
            raise StudyError(f"no such folder: {', '.join(missing)}; pass export folders such as results/reference")
        with ResultsStore(args.store or default_url()) as store:
            for folder in args.folders:
                inserted, read, n_sets = restore(store, folder)
                print(f"{folder}: {inserted} of {read} rows inserted ({read - inserted} already there or not "
                      f"complete), {n_sets} dataset rows merged")  # fmt: skip
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
