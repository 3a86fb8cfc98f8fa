"""Grids as data: named axes in a TOML file, expanded into cells, validated before anything trains.

A grid is a table of axes (datasets, sizes, strategies, backbones, seeds) plus protocol settings (image size,
epochs, tuning trials, test cap, augmentation, ``deploy``: also measure Keras/TFLite deployment figures, which
is not part of a cell's key). ``expand`` takes the product of the axes, collapses the backbone axis for
strategies that have none (``scratch_small``), and drops cells that cannot or should not run, each with a reason
that ``--dry-run`` reports (benchopt's ``skip`` hook): a size larger than the dataset's pool, or a per-strategy
limit (``[grids.NAME.limits]``: ``max_n``, ``sizes``, ``backbones``) that keeps a CPU grid within budget. A grid
may also be the union of other grids (``include = [...]``), e.g. a core grid plus the shift ladder with its own
sizes.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from study.data.loaders import IMAGE_SIZES
from study.errors import StudyError, unknown_name

AXES = ("datasets", "sizes", "strategies", "backbones", "seeds")

# The one schema of a grid table: key -> (expected type, human name). TOML gives these types directly, so a value of
# another type is a mistake (``augment = "false"`` is a string, and a non-empty string would read as true).
SCHEMA: dict[str, tuple[type, type | None, str]] = {
    "description": (str, None, "a string"),
    "datasets": (list, str, "a list of names"),
    "strategies": (list, str, "a list of names"),
    "backbones": (list, str, "a list of names"),
    "include": (list, str, "a list of grid names"),
    "sizes": (list, int, "a list of integers"),
    "seeds": (list, int, "a list of integers"),
    "image_size": (int, None, "an integer"),
    "epochs": (int, None, "an integer"),
    "trials": (int, None, "an integer"),
    "max_test": (int, None, "an integer"),
    "retries": (int, None, "an integer"),
    "augment": (bool, None, "true or false"),
    "deploy": (bool, None, "true or false"),
    "limits": (dict, dict, "a table of per-strategy tables"),
    "pairs": (list, list, 'a list of [source, target] pairs, e.g. [["mnist", "mnist_m"]]'),
    "n_target_labels": (list, int, "a list of integers (labelled target images per pair; 0 = unsupervised)"),
}
LIMIT_SCHEMA: dict[str, tuple[type, type | None, str]] = {
    "max_n": (int, None, "an integer"),
    "sizes": (list, int, "a list of integers"),
    "backbones": (list, str, "a list of names"),
}
DATASET_SCHEMA: dict[str, tuple[type, type | None, str]] = {
    "path": (str, None, "a string"),
    "domain": (str, None, "a string"),
    "test_fraction": (float, None, "a number between 0 and 1"),
}

# Allowed ranges (checked for grid files and command-line overrides alike, before anything trains).
MAX_SEED = 2**32 - 1  # numpy's and TensorFlow's seeds are 32-bit
MAX_COUNT = 1_000_000  # epochs, trials, test images, training images: anything larger is a typo


def _is(value: Any, kind: type) -> bool:
    if kind is list:
        return isinstance(value, list)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_types(table: dict[str, Any], schema: dict[str, tuple[type, type | None, str]], where: str) -> None:
    """Every key of a TOML table must have its schema's type: one line naming the key, what it got and what it needs."""
    unknown = sorted(set(table) - set(schema))
    if unknown:
        raise StudyError(f"{where} has unknown keys {unknown}; known keys: {sorted(schema)}")
    for key, value in table.items():
        kind, item, expected = schema[key]
        ok = _is(value, kind)
        if ok and kind is list and item is not None:
            ok = all(_is(v, item) for v in value)
        if ok and kind is dict and item is dict:
            ok = all(isinstance(v, dict) for v in value.values())
        if not ok:
            raise StudyError(f"{where}: {key} must be {expected}, got {value!r} ({type(value).__name__})")


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One trained model of the study: the unit the store claims and records (built with keywords only)."""

    dataset: str
    n_images: int
    strategy: str
    backbone: str | None  # None: the strategy uses no backbone (the store's column says NO_BACKBONE)
    image_size: int
    seed: int
    epochs: int
    trials: int
    augment: bool
    max_test: int
    grid: str
    retries: int = 2  # degenerate-model retries (protocol, not part of the key)
    deploy: bool = False  # also measure Keras/TFLite deployment figures (metrics["deploy"]; not part of the key)
    # Domain adaptation (study.train.adaptation): ``dataset`` is then the *target* (its test split scores the cell),
    # ``source`` the labelled source dataset, ``n_images`` the labelled source images (80 % train / 20 % validation,
    # as for any cell) and ``n_target_labels`` the labelled target images N_t (0: unsupervised adaptation). Both are
    # None for an ordinary cell, and then neither its key nor its store row changes.
    source: str | None = None
    n_target_labels: int | None = None

    @property
    def key(self) -> str:
        from study.engine.store import make_cell_key

        return make_cell_key(self.store_fields())

    def store_fields(self) -> dict[str, Any]:
        """The cell as the store's key columns."""
        from study.data.catalog import describe
        from study.engine.store import NO_BACKBONE

        d = asdict(self)
        d["backbone"] = NO_BACKBONE if self.backbone is None else self.backbone
        d.pop("retries")
        d.pop("deploy")
        d["domain"] = describe(self.dataset).domain
        d["epochs_budget"] = d.pop("epochs")
        d["trials_budget"] = d.pop("trials")
        return d


@dataclass(frozen=True)
class Grid:
    name: str
    description: str
    datasets: tuple[str, ...]
    sizes: tuple[int, ...]
    strategies: tuple[str, ...]
    backbones: tuple[str, ...]
    seeds: tuple[int, ...]
    image_size: int = 96
    epochs: int = 10
    trials: int = 1
    max_test: int = 1000
    augment: bool = False
    retries: int = 2  # retrain a degenerate model up to this many times (next-best trial, then another seed)
    deploy: bool = False  # record TFLite/Keras deployment figures per cell (study.train.deploy; costs ~20 s a cell)
    limits: dict[str, dict[str, Any]] = field(default_factory=dict)
    include: tuple[str, ...] = ()
    parts: tuple[Grid, ...] = ()  # resolved ``include`` grids
    pairs: tuple[tuple[str, str], ...] = ()  # (source, target): a domain-adaptation grid (replaces ``datasets``)
    n_target_labels: tuple[int, ...] = (0,)  # labelled target images per pair (domain-adaptation grids only)

    def with_overrides(self, **overrides: Any) -> Grid:
        """CLI flags replace whole axes or settings (``None`` = keep the grid's value), in included grids too.

        Values are checked here under their flag names (``--image-size``), before they reach any grid.
        """
        given = {k: (tuple(v) if isinstance(v, list) else v) for k, v in overrides.items() if v is not None}
        _check_ranges(given, lambda key: "--" + key.replace("_", "-"))
        return replace(self, parts=tuple(p.with_overrides(**overrides) for p in self.parts), **given)


@dataclass(frozen=True)
class Skipped:
    cell: Cell
    reason: str


def default_grid_file() -> Path:
    return Path(str(resources.files("study.engine") / "grids.toml"))


def load_grids(path: Path | None = None) -> dict[str, Grid]:
    """Every grid in a TOML file (the packaged ``study/engine/grids.toml`` by default)."""
    path = Path(path) if path else default_grid_file()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError(f"grid file {path} does not exist; copy {default_grid_file()} and edit it") from None
    except IsADirectoryError:
        raise StudyError(f"grid file {path} is a folder; pass the .toml file inside it") from None
    except (PermissionError, UnicodeDecodeError) as exc:
        raise StudyError(f"grid file {path} cannot be read ({type(exc).__name__}); pass a readable TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise StudyError(f"grid file {path} is not valid TOML: {exc}") from None
    check_types(raw, {"datasets": (dict, dict, "a table of [datasets.NAME] tables"),
                      "grids": (dict, dict, "a table of [grids.NAME] tables")}, f"grid file {path}")  # fmt: skip
    _register_folders(raw.get("datasets", {}), path)
    tables = raw.get("grids", {})
    if not tables:
        raise StudyError(f"grid file {path} defines no [grids.NAME] table")
    for name, table in tables.items():
        check_types(table, SCHEMA, f"grid {name!r} in {path}")
        for strategy, limit in table.get("limits", {}).items():
            check_types(limit, LIMIT_SCHEMA, f"grid {name!r} in {path}, limits.{strategy}")
        for inc in table.get("include", []):
            if inc not in tables or tables[inc].get("include"):
                raise StudyError(f"grid {name!r} includes {inc!r}, which is not a plain grid in {path}")
        if "pairs" in table and "datasets" in table:
            raise StudyError(f"grid {name!r} in {path} has both datasets and pairs; a grid names one or the other")
        if "n_target_labels" in table and "pairs" not in table:
            raise StudyError(f"grid {name!r} in {path}: n_target_labels needs pairs = [[source, target], ...]")
        for pair in table.get("pairs", []):
            if len(pair) != 2 or not all(isinstance(p, str) for p in pair):
                raise StudyError(f"grid {name!r} in {path}: pair {pair!r} must be [source, target], two names")
        axes = [a for a in AXES if not (a == "datasets" and "pairs" in table)]
        missing = [a for a in axes if a not in table and not table.get("include")]
        if missing:
            raise StudyError(f"grid {name!r} in {path} lacks the axes {missing}")

    def make(name: str) -> Grid:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in tables[name].items()}
        if "pairs" in values:
            values["pairs"] = tuple(tuple(p) for p in values["pairs"])
            values["datasets"] = tuple(dict.fromkeys(t for _, t in values["pairs"]))  # the targets
        for axis in AXES:
            values.setdefault(axis, ())
        parts = tuple(make(inc) for inc in values.get("include", ()))
        return Grid(name=name, description=values.pop("description", ""), parts=parts, **values)

    return {name: make(name) for name in tables}


def _register_folders(tables: dict[str, Any], grid_file: Path) -> None:
    """``[datasets.NAME] path = "...", domain = "..."``: a user's image folder joins the registry.

    Relative paths are resolved against the grid file, so a study folder can carry its grid and its data.
    """
    from study.data.datasets import get_dataset, register_image_folder

    for name, table in tables.items():
        check_types(table, DATASET_SCHEMA, f"[datasets.{name}] in {grid_file}")
        if "path" not in table or "domain" not in table:
            raise StudyError(f'[datasets.{name}] in {grid_file} needs path and domain, e.g. domain = "medical"')
        if not 0.0 < float(table.get("test_fraction", 0.2)) < 1.0:
            raise StudyError(f"[datasets.{name}] in {grid_file}: test_fraction must be between 0 and 1")
        root = (grid_file.parent / str(table["path"])).resolve()
        try:
            if get_dataset(name).root == root:
                continue
        except StudyError:
            pass
        register_image_folder(name, root, str(table["domain"]), float(table.get("test_fraction", 0.2)))


def _check_ranges(values: dict[str, Any], label: Callable[[str], str]) -> None:
    """Protocol values within their allowed ranges; ``label`` names a value as the user wrote it (key or flag)."""
    lo, hi = IMAGE_SIZES
    image_size = values.get("image_size")
    if image_size is not None and (not _is(image_size, int) or not lo <= image_size <= hi):
        raise StudyError(f"{label('image_size')} must be an integer from {lo} to {hi} px, got {image_size!r}")
    for n in values.get("sizes") or ():
        if not _is(n, int) or not 2 <= n <= MAX_COUNT:
            raise StudyError(f"{label('sizes')}: training-set size {n!r} must be an integer from 2 to {MAX_COUNT}")
    for seed in values.get("seeds") or ():
        if not _is(seed, int) or not 0 <= seed <= MAX_SEED:
            raise StudyError(f"{label('seeds')}: seed {seed!r} must be an integer from 0 to {MAX_SEED}")
    for name in ("epochs", "trials", "max_test"):
        value = values.get(name)
        if value is not None and (not _is(value, int) or not 1 <= value <= MAX_COUNT):
            raise StudyError(f"{label(name)} must be an integer from 1 to {MAX_COUNT}, got {value!r}")
    augment = values.get("augment")
    if augment is not None and not isinstance(augment, bool):
        raise StudyError(f"{label('augment')} must be true or false, got {augment!r}")


def get_grid(name: str, path: Path | None = None) -> Grid:
    grids = load_grids(path)
    if name not in grids:
        raise unknown_name("grid", name, list(grids))
    return grids[name]


def validate(grid: Grid) -> None:
    """Every axis value must exist before anything trains (one-line errors listing what does exist)."""
    if grid.parts:
        for part in grid.parts:
            validate(part)
        return
    from study.data.catalog import describe
    from study.train.strategies import get_strategy
    from study.zoo.backbones import check_image_size, get_backbone

    for axis in AXES:
        if not getattr(grid, axis) and not (axis == "backbones" and not _needs_backbone(grid)):
            raise StudyError(f"grid {grid.name!r}: axis {axis!r} is empty; give at least one value")
    _check_ranges(
        {k: getattr(grid, k) for k in ("image_size", "sizes", "seeds", "epochs", "trials", "max_test", "augment")},
        lambda key: f"grid {grid.name!r}: {key}",
    )
    for d in grid.datasets:
        describe(d)
    for s in grid.strategies:
        get_strategy(s)
    check_pairs(grid)
    for b in grid.backbones:
        check_image_size(get_backbone(b), grid.image_size)
    if not isinstance(grid.deploy, bool):
        raise StudyError(f"grid {grid.name!r}: deploy must be true or false, got {grid.deploy!r}")
    if not isinstance(grid.retries, int) or grid.retries < 0:
        raise StudyError(f"grid {grid.name!r}: retries must be an integer >= 0, got {grid.retries!r}")
    for s, limit in grid.limits.items():
        get_strategy(s)
        for b in limit.get("backbones", ()):
            get_backbone(b)


def _needs_backbone(grid: Grid) -> bool:
    """Whether any strategy of the grid uses the backbone axis (text strategies bring their own encoder)."""
    from study.train.strategies import get_strategy

    return any(get_strategy(s).uses_backbone for s in grid.strategies)


def _modality(dataset: str) -> str:
    from study.data.catalog import describe
    from study.data.datasets import get_dataset

    return get_dataset(describe(dataset).base).modality


def check_pairs(grid: Grid) -> None:
    """A domain-adaptation grid: known pairs with one class set, pair strategies only (and never the reverse)."""
    from study.data.cell_data import check_pair
    from study.train.strategies import get_strategy

    paired = [s for s in grid.strategies if get_strategy(s).pair]
    if not grid.pairs:
        if paired:
            raise StudyError(
                f"grid {grid.name!r}: strategies {paired} need a (source, target) pair; give pairs = [[source, "
                "target], ...] instead of datasets"
            )
        return
    ordinary = [s for s in grid.strategies if not get_strategy(s).pair]
    if ordinary:
        raise StudyError(
            f"grid {grid.name!r} names pairs, but strategies {ordinary} train on one dataset; use the pair "
            "strategies (source_only, dann, target_only, source_then_target)"
        )
    for source, target in grid.pairs:
        check_pair(source, target)
    bad = [n for n in grid.n_target_labels if not _is(n, int) or not 0 <= n <= MAX_COUNT]
    if bad or not grid.n_target_labels:
        raise StudyError(f"grid {grid.name!r}: n_target_labels must be integers from 0 to {MAX_COUNT}, got {bad}")


def expand(grid: Grid) -> tuple[list[Cell], list[Skipped]]:
    """The grid's cells in a stable order (cheap, cache-sharing cells of a dataset together), and the skips."""
    from study.data.catalog import describe
    from study.data.datasets import get_dataset
    from study.train.strategies import get_strategy

    validate(grid)
    if grid.parts:
        cells, skipped, seen = [], [], set()
        for part in grid.parts:
            for cell in expand(part)[0]:
                if cell.key not in seen:
                    seen.add(cell.key)
                    cells.append(replace(cell, grid=grid.name))
            skipped += [replace(s, cell=replace(s.cell, grid=grid.name)) for s in expand(part)[1]]
        return cells, skipped
    if grid.pairs:
        return _expand_pairs(grid)
    cells: list[Cell] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for dataset, n, seed, strategy, backbone in itertools.product(
        grid.datasets, grid.sizes, grid.seeds, grid.strategies, grid.backbones or (None,)
    ):
        if get_strategy(strategy).modality != _modality(dataset):
            continue  # an image strategy on a text dataset (or the reverse) is not a cell: no skip line per pair
        cell = Cell(
            dataset=dataset, n_images=n, strategy=strategy,
            backbone=backbone if get_strategy(strategy).uses_backbone else None, image_size=grid.image_size,
            seed=seed, epochs=grid.epochs, trials=grid.trials, augment=grid.augment, max_test=grid.max_test,
            grid=grid.name, retries=grid.retries, deploy=grid.deploy,
        )  # fmt: skip
        if cell.key in seen:
            continue
        seen.add(cell.key)
        pool = describe(dataset).pool_size
        if pool is not None and n > pool:
            unit = "texts" if get_dataset(describe(dataset).base).modality == "text" else "images"
            skipped.append(Skipped(cell, f"n={n} exceeds the pool of {dataset} ({pool} {unit})"))
        elif (reason := _limit_reason(grid, cell)) is not None:
            skipped.append(Skipped(cell, reason))
        else:
            cells.append(cell)
    return cells, skipped


def _limit_reason(grid: Grid, cell: Cell) -> str | None:
    """Why the grid's per-strategy limits (``max_n``, ``sizes``, ``backbones``) leave ``cell`` out, or None."""
    limit = grid.limits.get(cell.strategy, {})
    n, cap, only, sizes = cell.n_images, limit.get("max_n"), limit.get("backbones"), limit.get("sizes")
    if cap is not None and n > cap:
        return f"n={n} is above this grid's cap for {cell.strategy} (max_n={cap})"
    if sizes is not None and n not in sizes:
        return f"this grid runs {cell.strategy} only at n in {list(sizes)}"
    if only is not None and cell.backbone is not None and cell.backbone not in only:
        return f"this grid runs {cell.strategy} only with {', '.join(only)}"
    return None


def _expand_pairs(grid: Grid) -> tuple[list[Cell], list[Skipped]]:
    """A domain-adaptation grid's cells: pairs x source sizes x N_t x seeds x strategies x backbones, and the skips.

    Skipped: a source size above the source pool; N_t above the target pool or below two per target class (a
    labelled target set is split into training and validation like any N images); a strategy that needs labelled
    target images (``Strategy.needs_target_labels``) at N_t = 0.
    """
    from study.data.catalog import describe
    from study.data.datasets import get_dataset
    from study.train.strategies import get_strategy

    cells: list[Cell] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for (source, target), n, n_t, seed, strategy, backbone in itertools.product(
        grid.pairs, grid.sizes, grid.n_target_labels, grid.seeds, grid.strategies, grid.backbones
    ):
        record = get_strategy(strategy)
        cell = Cell(
            dataset=target, n_images=n, strategy=strategy, backbone=backbone if record.uses_backbone else None,
            image_size=grid.image_size, seed=seed, epochs=grid.epochs, trials=grid.trials, augment=grid.augment,
            max_test=grid.max_test, grid=grid.name, retries=grid.retries, deploy=grid.deploy, source=source,
            n_target_labels=n_t,
        )  # fmt: skip
        if cell.key in seen:
            continue
        seen.add(cell.key)
        source_pool, target_pool = describe(source).pool_size, describe(target).pool_size
        k = len(get_dataset(describe(target).base).class_names)
        if source_pool is not None and n > source_pool:
            skipped.append(Skipped(cell, f"n={n} exceeds the pool of source {source} ({source_pool} images)"))
        elif target_pool is not None and n_t > target_pool:
            skipped.append(Skipped(cell, f"n_target_labels={n_t} exceeds the pool of {target} ({target_pool} images)"))
        elif 0 < n_t < 2 * k:
            skipped.append(Skipped(cell, f"n_target_labels={n_t} is below 2 per class for {target}'s {k} classes"))
        elif n_t == 0 and record.needs_target_labels:
            skipped.append(Skipped(cell, f"{strategy} needs labelled target images (n_target_labels > 0)"))
        elif (reason := _limit_reason(grid, cell)) is not None:
            skipped.append(Skipped(cell, reason))
        else:
            cells.append(cell)
    return cells, skipped
