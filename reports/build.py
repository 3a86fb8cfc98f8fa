"""``python -m reports.build``: render the results store as one self-contained HTML report.

The report (default ``reports/report.html``) embeds its figures as PNG data URIs and its scripts inline, so it
opens offline from any folder; the exported tables (``runs.csv`` / ``runs.parquet``) are written beside it and
linked relatively. It only reads the store: a failed report never touches a result, and it can run while a sweep
does. ``make study`` runs it after the sweep (``study`` never imports ``reports``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from reports import data as rdata
from reports.context import (
    advisor_section,
    anchor_groups,
    backbones_section,
    context,
    deployment_frame,
    deployment_section,
    figures,
    gain_key,
    similarity_labels,
)
from reports.files import export_tables, write_atomic
from reports.formatting import table
from study.cli_support import add_verbose_flag, quiet_tensorflow
from study.errors import StudyError

#: The sections and writers are re-exported: ``from reports.build import context, export_tables, ...`` keeps working.
__all__ = [
    "DEFAULT_OUT",
    "TEMPLATES",
    "advisor_section",
    "anchor_groups",
    "backbones_section",
    "build_report",
    "context",
    "deployment_frame",
    "deployment_section",
    "export_tables",
    "figures",
    "gain_key",
    "main",
    "render",
    "similarity_labels",
    "table",
    "write_atomic",
]

DEFAULT_OUT = Path("reports") / "report.html"
TEMPLATES = Path(__file__).with_name("templates")


def render(ctx: Mapping[str, Any]) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    env.filters["jsonscript"] = lambda s: s.replace("</", "<\\/")
    return env.get_template("report.html.j2").render(**ctx)



def build_report(
    store_or_frame: Any, out: Path | None = None, title: str | None = None, export_dir: Path | None = None
) -> Path:
    """Render the report of a results store (or a frame of its rows) to ``out``; returns the path written.

    ``out`` defaults to ``reports/report.html`` under the current directory and ``export_dir`` to ``export/``
    beside it (the report links there relatively). Raises ``StudyError`` when there is nothing to report.
    """
    out = Path(out) if out is not None else DEFAULT_OUT
    export_dir = Path(export_dir) if export_dir is not None else out.parent / "export"
    data = rdata.gather(store_or_frame)
    out.parent.mkdir(parents=True, exist_ok=True)
    downloads = export_tables(store_or_frame, export_dir, out.parent)
    write_atomic(out, render(context(data, downloads, title)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; a StudyError (e.g. an empty store) is one line on stderr and exit status 2."""
    parser = argparse.ArgumentParser(prog="python -m reports.build", description=__doc__.splitlines()[0])
    parser.add_argument("--store", metavar="URL", help="results store URL (default: sqlite:///results/study.db)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report file (default: {DEFAULT_OUT})")
    parser.add_argument("--export-dir", type=Path, help="folder for runs.csv/runs.parquet (default: export/ beside)")
    parser.add_argument("--title", help="report title (default: names the grid)")
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)
    try:
        from study.engine.store import ResultsStore, default_url

        with ResultsStore(args.store or default_url(), create=False) as store:
            path = build_report(store, args.out, args.title, args.export_dir)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write the report to {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
