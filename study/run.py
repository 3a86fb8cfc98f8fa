"""``python -m study.run --grid NAME``: run a grid of the study into the results store.

Flags become plain values here and nowhere else (lower layers take arguments, not flags or environment).
Everything a user can get wrong (grid name, axis values, store URL, missing data or weights, a broken image
folder, a dataset changed under results already stored) is checked before the first cell trains, and reported
as one line on stderr with exit status 2; a store file is created only once those checks pass. Ctrl-C or
SIGTERM stops the sweep with one line and exit status 130; the cells in flight are pending again.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from study import config
from study.cli_support import add_verbose_flag, quiet_tensorflow
from study.errors import StudyError

if TYPE_CHECKING:
    import pandas as pd


def _csv(kind: type) -> object:
    def parse(text: str) -> list:
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}") from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m study.run",
        description="Run a grid of transfer-learning cells (dataset x size x strategy x backbone x seed).",
    )
    p.add_argument("--grid", default="quick", help="grid name from the grid file (default: quick)")
    p.add_argument("--grid-file", type=Path, help="TOML grid file (default: the packaged study/grids.toml)")
    p.add_argument("--datasets", type=_csv(str), help="override the datasets axis, e.g. mnist,retinamnist")
    p.add_argument("--sizes", type=_csv(int), help="override training-set sizes, e.g. 50,200,1000")
    p.add_argument("--strategies", type=_csv(str), help="override strategies")
    p.add_argument("--backbones", type=_csv(str), help="override backbones")
    p.add_argument("--seeds", type=_csv(int), help="override seeds, e.g. 0,1,2")
    p.add_argument("--image-size", type=int, help="square input size in pixels")
    p.add_argument("--epochs", type=int, help="epochs per training phase (early stopping may end sooner)")
    p.add_argument("--trials", type=int, help="tuning trials per cell (the same for every strategy)")
    p.add_argument("--max-test", type=int, help="evaluate on at most this many test images (fixed subset)")
    p.add_argument("--store", help="SQLAlchemy URL of the results store (default: sqlite:///results/study.db)")
    p.add_argument("--cache-dir", type=Path, help="decoded images and activations (default: $TRANSFER_STUDY_CACHE)")
    p.add_argument("--retry-failed", action="store_true", help="rerun cells recorded as failed")
    p.add_argument("--executor", choices=["local", "ray"], default="local", help="who runs the cells (default: local)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (CPU threads are split)")
    p.add_argument("--address", help="Ray cluster: 'auto' or ray://host:10001 (default: start a local Ray)")
    p.add_argument("--cpus-per-cell", type=float, default=1, help="Ray resources per cell (default 1 CPU)")
    p.add_argument("--gpus-per-cell", type=float, default=0, help="Ray GPUs per cell (e.g. 1 on a GPU cluster)")
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        help="module to import in every worker (registers your own datasets/strategies/backbones); repeatable",
    )
    p.add_argument("--dry-run", action="store_true", help="list the cells and an estimated duration, run nothing")
    p.add_argument("--no-latency", action="store_true", help="skip the per-model CPU latency measurement")
    p.add_argument("--no-similarity", action="store_true", help="do not measure domain-similarity scores first")
    p.add_argument("--log-dir", type=Path, default=Path("results/logs"), help="where the sweep log goes")
    add_verbose_flag(p)
    return p


INTERRUPTED_EXIT = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C


class Interrupted(Exception):
    """The sweep was stopped by SIGINT/SIGTERM after ``done`` cells of this run completed."""

    def __init__(self, done: int) -> None:
        super().__init__(done)
        self.done = done


def main(argv: list[str] | None = None) -> int:
    from study.engine.sweep import stop_on_signals

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... --dry-run | head` ends quietly
    args = build_parser().parse_args(argv)
    quiet_tensorflow(args.verbose)  # before anything imports TensorFlow (workers inherit the choice)
    logging.getLogger("study").addHandler(logging.NullHandler())  # records go to the log file, not the console
    stop_on_signals()
    try:
        return _run(args)
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt) as exc:
        done = exc.done if isinstance(exc, Interrupted) else 0
        print(f"interrupted: {done} cells done, rerun the same command to go on", file=sys.stderr)
        return INTERRUPTED_EXIT


def _pretrained_cells(cells: list) -> list:
    """Cells that load ImageNet weights: they need the weights file and a domain-similarity score."""
    from study.train.strategies import get_strategy

    return [c for c in cells if c.backbone is not None and get_strategy(c.strategy).pretrained]


def _check_inputs(cells: list, data_dirs: list[Path], weights: config.WeightsDirs, cache_dir: Path) -> list[str]:
    """Data, weights and the user's own image folders must be usable before the first cell trains.

    Returns warnings (unreadable images skipped in a folder) for the caller to print.
    """
    from study.data import shift
    from study.data.checks import check_folders
    from study.data.datasets import get_dataset
    from study.data.loaders import resolve_root
    from study.zoo.backbones import get_backbone, resolve_weights

    for base in sorted({shift.parse(c.dataset)[0] for c in cells}):
        resolve_root(get_dataset(base), data_dirs)
    for name in sorted({c.backbone for c in _pretrained_cells(cells)}):
        resolve_weights(get_backbone(name), weights)
    needs: dict[tuple[str, int], set[int]] = {}
    for c in cells:
        needs.setdefault((shift.parse(c.dataset)[0], c.image_size), set()).add(c.n_images)
    return check_folders(needs, data_dirs, cache_dir)


def _run(args: argparse.Namespace) -> int:
    from study.engine.executors import load_plugins as _load_plugins
    from study.engine.grid import expand, get_grid
    from study.engine.store import ResultsStore, default_url, store_exists
    from study.engine.sweep import estimate_seconds, history_rates, setup_logging

    _load_plugins(args.plugin)
    grid = get_grid(args.grid, args.grid_file).with_overrides(
        datasets=args.datasets, sizes=args.sizes, strategies=args.strategies, backbones=args.backbones,
        seeds=args.seeds, image_size=args.image_size, epochs=args.epochs, trials=args.trials, max_test=args.max_test,
    )  # fmt: skip
    cells, skipped = expand(grid)
    if not cells:
        raise StudyError(f"grid {grid.name!r} has no runnable cells ({len(skipped)} skipped); check --sizes")
    url = args.store or default_url(create=False)
    # An existing store is opened now; a new one only once every check below has passed (no empty file left).
    import pandas as pd

    store = ResultsStore(url) if store_exists(url) else None
    held = store.to_frame() if store else pd.DataFrame()  # read once: the checks and the estimate share it
    complete = held[held["status"] == "complete"] if not held.empty else held
    _check_budgets(held, cells)
    done = store.finished_keys() if store else set()
    todo = [c for c in cells if c.key not in done]
    rates = history_rates(complete)
    eta = sum(estimate_seconds(c, rates) for c in todo)
    shown = store.display_url if store else url
    print(
        f"grid {grid.name}: {len(cells)} cells ({len(cells) - len(todo)} already complete, {len(skipped)} skipped), "
        f"estimated {eta / 60:.0f} min of cell time on this machine (one worker; `make bench-workers` measures what "
        f"more workers save); store {shown}"
    )
    if args.dry_run:
        for c in cells:
            state = "complete" if c.key in done else f"~{estimate_seconds(c, rates):.0f}s"
            print(f"  {c.key}  [{state}]")
        for s in skipped:
            print(f"  skip {s.cell.key}: {s.reason}")
        return 0

    if args.workers < 1:
        raise StudyError(f"--workers must be at least 1, got {args.workers}")
    cache_dir = args.cache_dir or config.cache_dir()
    config.check_writable(
        cache_dir, "the cache folder", "pass --cache-dir or set TRANSFER_STUDY_CACHE to a writable folder"
    )
    config.check_writable(args.log_dir, "the log folder", "pass --log-dir with a writable folder")
    data_dirs = config.data_dirs()
    weights = config.WeightsDirs(config.keras_home(), cache_dir)
    warnings = _check_inputs(todo, data_dirs, weights, cache_dir)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if store is not None:
        _check_fingerprints(complete, store.display_url, cells, data_dirs)
        _hint_failed(store, todo, args.retry_failed)
    else:
        store = ResultsStore(args.store or default_url())
    store.check_writable()
    log_path = setup_logging(args.log_dir)
    for warning in warnings:
        logging.getLogger("study.run").warning(warning)
    from study.engine.executors import RunnerConfig, run_local, run_ray

    if not args.no_similarity:
        _similarity(todo, store, cache_dir, data_dirs, weights)
    runner_config = RunnerConfig(
        store_url=store.url, cache_dir=str(cache_dir), data_dirs=tuple(str(d) for d in data_dirs),
        keras_home=str(weights.keras_home), measure_latency=not args.no_latency, retry_failed=args.retry_failed,
        grid_file=str(args.grid_file) if args.grid_file else None, plugins=tuple(args.plugin), log_file=str(log_path),
    )  # fmt: skip
    if args.executor == "ray":
        summary = run_ray(todo, runner_config, args.address, args.cpus_per_cell, args.gpus_per_cell)
    else:
        summary = run_local(todo, runner_config, workers=args.workers)
    if summary.interrupted:
        raise Interrupted(summary.complete)
    print(
        f"finished in {summary.seconds / 60:.1f} min: {summary.complete} complete, {summary.failed} failed, "
        f"{summary.skipped} skipped (already done or held by another sweep)"
    )
    for key, message in summary.failures:
        print(f"  failed {key}: {message}")
    print(f"results: {store.display_url}  (export: python -m study.analysis.export --store {store.display_url} "
          "--format parquet)")
    print(f"log: {log_path}")
    print(f"report: python -m reports.build --store {store.display_url}")
    return 1 if summary.failed else 0


def _check_budgets(held: pd.DataFrame, cells: list) -> None:
    """Refuse, before training, cells whose comparison the store (its rows: ``held``) already holds under another
    training budget."""
    import pandas as pd

    from study.analysis.stats import check_one_budget

    if not held.empty:
        held = held[held["status"].isin(["complete", "running"])]
    planned = pd.DataFrame([c.store_fields() for c in cells])
    check_one_budget(
        pd.concat([held, planned], ignore_index=True),
        "Sweep a different --trials/--epochs into its own --store (e.g. sqlite:///results/tuned.db), or keep the "
        "store's budget.",
    )


def _check_fingerprints(frame: pd.DataFrame, store_url: str, cells: list, data_dirs: list[Path]) -> None:
    """Refuse a sweep whose dataset's data changed under results the store already holds for that name.

    A cell is "the same cell" only on the same data: the rows' ``provenance.data_checksum`` must equal the
    data's fingerprint now (cell keys stay as they are, so the committed reference keys remain valid).
    """
    from study.data.catalog import fingerprint

    if frame.empty:  # the store's complete rows
        return
    frame = frame[frame["dataset"].isin({c.dataset for c in cells})]
    for name, rows in frame.groupby("dataset"):
        stored = {p.get("data_checksum") for p in rows["provenance"] if isinstance(p, dict)} - {None}
        now = fingerprint(str(name), data_dirs) if stored else None
        if now is not None and stored != {now}:
            old = ", ".join(sorted(s[:12] for s in stored))
            raise StudyError(
                f"dataset {name!r} is not the data that {len(rows)} complete cells in {store_url} were "
                f"trained on (data fingerprint {old} then, {now[:12]} now); to keep both, register the new data "
                "under another name in the grid file, or sweep into another --store"
            )


def _hint_failed(store: object, todo: list, retry_failed: bool) -> None:
    """Failed cells are not rerun unless asked; say so in one line rather than report them as just 'skipped'."""
    if retry_failed:
        return
    keys = {c.key for c in todo}
    failed = [r for r in store.rows(status="failed") if r["cell_key"] in keys]  # type: ignore[attr-defined]
    if failed:
        first = str(failed[0].get("error") or "").splitlines()[0][:160] if failed[0].get("error") else "no error"
        print(
            f"note: {len(failed)} cells failed in an earlier run and are skipped (first: {failed[0]['cell_key']}: "
            f"{first}); once the cause is fixed, add --retry-failed to rerun them"
        )


def _similarity(
    cells: list, store: object, cache_dir: Path, data_dirs: list[Path], weights: config.WeightsDirs
) -> None:
    """Domain-similarity scores for every (dataset, pretrained backbone, size) the cells use (cached in the store)."""
    from study.cache.features import FeatureEngine
    from study.data import catalog as data
    from study.probes.domain import ensure_scores

    def load(name: str, size: int) -> object:
        return data.load(name, size, data_dirs, cache_dir)

    by_size: dict[int, tuple[set, set]] = {}
    for c in _pretrained_cells(cells):
        ds, bb = by_size.setdefault(c.image_size, (set(), set()))
        ds.add(c.dataset)
        bb.add(c.backbone)
    engine = FeatureEngine(cache_dir, weights)
    for size, (ds, bb) in sorted(by_size.items()):
        ensure_scores(store, sorted(ds), sorted(bb), size, engine, load)


if __name__ == "__main__":
    sys.exit(main())
