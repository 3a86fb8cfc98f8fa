"""``advisor recommend --source-dir PATH``: a labelled related source, few or no target labels (#20).

The question is no longer "which backbone and strategy for N images" but "I have many labelled images from a related
domain and N_t labelled ones from mine: train on the source only, adapt it without target labels (DANN), fine-tune
the source model on my N_t images, or ignore the source?". The answer is read from the study's committed pair cells
(``results/adaptation``: the ``domain_adaptation`` grid) through ``study.analysis.adaptation``'s table, the same
numbers as its ``analysis.md`` and the report: at the measured N_t nearest the user's, the recipe with the highest
mean on most pair x network rows, those rows as evidence, and what the intervals say about DANN without labels.

Folder checks (source missing, not class folders, class names that differ from the target's) are one-line
``AdvisorError``s before the results are read; nothing here needs TensorFlow.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from advisor.data import REPO, AdvisorError, load_results
from study.analysis import adaptation

ADAPTATION_DIR = REPO / "results" / "adaptation"
"""The committed pair cells of the ``domain_adaptation`` grid (``python -m study.analysis.export``)."""
LAYOUT = "one sub-folder of images per class (or train/ + test/ holding them)"


@dataclass
class Folder:
    """A labelled image folder as the advisor counts it: class names and labelled training images."""

    path: Path
    classes: list[str]
    n_images: int


@dataclass
class AdaptationAdvice:
    """What ``--source-dir`` answers: the best-measured recipe at the nearest measured N_t, and its evidence."""

    n_target_labels: int
    measured_n_t: list[int]
    recipe: str
    wins: dict[str, int]
    rows: int
    evidence: str
    caveats: list[str]
    findings: list[str]
    results: str
    source: dict[str, Any] | None = None
    target: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _images_under(folder: Path) -> int:
    from study.data.readers import IMAGE_EXTENSIONS

    return sum(1 for _, _, files in os.walk(folder) for f in files
               if Path(f).suffix.lower() in IMAGE_EXTENSIONS and not f.startswith("."))  # fmt: skip


def read_folder(path: str | Path, flag: str) -> Folder:
    """Class names and labelled training images of a folder (``train/`` and ``val/`` when split), or a one-line
    ``AdvisorError`` naming ``flag`` and the fix."""
    root = Path(path).expanduser()
    if not root.exists():
        raise AdvisorError(f"{flag} {root} does not exist; pass a folder with {LAYOUT}")
    if not root.is_dir():
        raise AdvisorError(f"{flag} {root} is not a folder; pass a folder with {LAYOUT}")
    split = (root / "train").is_dir()
    parts = [root / "train", *([root / "val"] if (root / "val").is_dir() else [])] if split else [root]
    classes = sorted(e.name for e in os.scandir(parts[0]) if e.is_dir() and not e.name.startswith("."))
    n_images = sum(_images_under(part / c) for part in parts for c in classes if (part / c).is_dir())
    if not classes or not n_images:
        raise AdvisorError(f"{flag} {root} holds no class sub-folders of images; give it {LAYOUT}")
    return Folder(root.resolve(), classes, n_images)


def check_classes(source: Folder, target: Folder) -> None:
    """Source and target must name the same classes: the study's pairs share one class set, and a label head
    trained on the source's classes cannot predict a class it never saw."""
    only_source = sorted(set(source.classes) - set(target.classes))
    only_target = sorted(set(target.classes) - set(source.classes))
    if only_source or only_target:
        def few(names: list[str]) -> str:
            return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "") or "none"

        raise AdvisorError(f"the class names of --source-dir and --data-dir differ (only in the source: "
                           f"{few(only_source)}; only in the target: {few(only_target)}); rename the class folders "
                           "so both use the same names")  # fmt: skip


def pair_table(results: str | Path = ADAPTATION_DIR) -> pd.DataFrame:
    """The study's domain-adaptation table (``study.analysis.adaptation.domain_adaptation_table``) of ``results``."""
    runs, _ = load_results(results)
    table = adaptation.domain_adaptation_table(runs)
    if table.empty:
        raise AdvisorError(f"{results} holds no domain-adaptation (source -> target) cells; pass the export of a "
                           "domain_adaptation sweep (python -m study.run --grid domain_adaptation)")  # fmt: skip
    return table


def nearest_n_t(n_t: int, measured: list[int]) -> int:
    """The measured N_t to answer from: 0 for no target labels; with labels, the nearest measured N_t > 0 (a recipe
    that uses target labels is only measured there)."""
    labelled = [m for m in measured if m > 0]
    if n_t == 0 or not labelled:
        return 0
    return min(labelled, key=lambda m: (abs(m - n_t), m))


def nearest_rows(table: pd.DataFrame, n_t: int) -> pd.DataFrame:
    """Per pair x network, the table row at the measured N_t nearest ``n_t`` (``nearest_n_t``): the grid measures
    each pair at its own labelled N_t (50, or 100 where 50 is under 2 images per class)."""
    pair = [k for k in adaptation.KEYS if k != "n_target_labels"]
    rows = [group[group["n_target_labels"] == nearest_n_t(n_t, sorted(int(v) for v in group["n_target_labels"]))]
            for _, group in table.groupby(pair, sort=True, dropna=False)]  # fmt: skip
    return pd.concat(rows, ignore_index=True) if rows else table.iloc[0:0]


def advise(n_t: int, table: pd.DataFrame, results: str = str(ADAPTATION_DIR)) -> AdaptationAdvice:
    """The recipe with the highest mean on most pair x network rows, each row at its measured N_t nearest ``n_t``."""
    if n_t < 0:
        raise AdvisorError(f"the number of labelled target images must be 0 or more, got {n_t}")
    rows = nearest_rows(table, n_t)
    levels = sorted(int(v) for v in rows["n_target_labels"].unique())
    wins = rows.apply(adaptation.best_recipe, axis=1).value_counts()
    order = {r: i for i, r in enumerate(adaptation.RECIPES)}
    top = sorted(wins.items(), key=lambda kv: (-kv[1], order.get(kv[0], 99)))
    caveats = []
    unlabelled = adaptation.versus(table[table["n_target_labels"] == 0], "dann", "source_only")
    if len(unlabelled):
        above = int((unlabelled["verdict"] == "above").sum())
        caveats.append(f"Without target labels, DANN's 95 % interval lies wholly above source-only's on {above} of "
                       f"{len(unlabelled)} measured pair x network rows" + (
                           ": on these pairs unsupervised DANN did not reliably beat training on the source alone."
                           if above == 0 else "."))  # fmt: skip
    labelled = adaptation.versus(rows, "dann", "source_only")
    if n_t > 0 and len(labelled):
        caveats.append(f"With target labels, DANN (semi-supervised: the labelled target images join its label loss) "
                       f"is wholly above source-only on {int((labelled['verdict'] == 'above').sum())} of "
                       f"{len(labelled)} rows; against target_only and source_then_target the intervals mostly "
                       "overlap, so the ranking is by means, not a significant win.")  # fmt: skip
    notes = []
    largest = int(table["n_target_labels"].max())
    if n_t > largest:
        notes.append(f"your N_t = {n_t} is beyond the study's largest measured N_t ({largest}): how the recipes "
                     "rank with this many target labels was not measured, so this is an extrapolation")  # fmt: skip
    elif levels != [n_t]:
        notes.append(f"read at the measured N_t nearest yours on each pair ({', '.join(map(str, levels))}; the grid "
                     "measures N_t = 0 and 50, or 100 where 50 is under 2 images per class)")  # fmt: skip
    notes.append("measured on small cells (250-1000 source images, 32-64 px, MobileNetV2 features or the DANN "
                 "paper's small CNN, 2 seeds): your pair's shift may differ from all of them")  # fmt: skip
    return AdaptationAdvice(
        n_target_labels=n_t, measured_n_t=levels, recipe=str(top[0][0]), wins={str(k): int(v) for k, v in top},
        rows=len(rows), evidence=adaptation.markdown(rows), caveats=caveats,
        findings=adaptation.findings(table), results=results, notes=notes,
    )  # fmt: skip


def recommend(source_dir: str, data_dir: str | None, n_images: int | None,
              results: str | Path = ADAPTATION_DIR) -> AdaptationAdvice:  # fmt: skip
    """Check the folders (before reading any result), count N_t and advise."""
    source = read_folder(source_dir, "--source-dir")
    target = read_folder(data_dir, "--data-dir") if data_dir else None
    if target is not None:
        check_classes(source, target)
    if n_images is None and target is None:
        raise AdvisorError("--source-dir needs the number of labelled target images: --n-images N (0 for none) or "
                           "--data-dir with the labelled target folder")  # fmt: skip
    n_t = int(n_images) if n_images is not None else target.n_images  # type: ignore[union-attr]
    advice = advise(n_t, pair_table(results), str(results))
    advice.source = {"path": str(source.path), "classes": len(source.classes), "images": source.n_images}
    if target is not None:
        advice.target = {"path": str(target.path), "classes": len(target.classes), "images": target.n_images}
    return advice


def format_advice(a: AdaptationAdvice) -> str:
    src = a.source or {}
    lines = [f"Domain adaptation: {a.n_target_labels} labelled target images"
             + (f" (counted in {a.target['path']})" if a.target else "")
             + f", a labelled source of {src.get('images', '?')} images in {src.get('classes', '?')} classes"
             + (" (same class names as the target)" if a.target else "") + "."]  # fmt: skip
    others = ", ".join(f"{k} {v}" for k, v in list(a.wins.items())[1:])
    at = "/".join(map(str, a.measured_n_t))
    lines.append(f"Measured best at N_t = {at}: {a.recipe} (highest mean on {a.wins[a.recipe]} of "
                 f"{a.rows} pair x network rows{'; ' + others if others else ''}), from {a.results}.")  # fmt: skip
    lines += [f"  caveat: {c}" for c in a.caveats]
    lines += [f"  note: {n}" for n in a.notes]
    lines.append(f"Evidence: target test accuracy at N_t = {at}, mean over seeds [95 % interval]:")
    lines.append(a.evidence)
    return "\n".join(lines)


def print_adaptation_advice(source_dir: str, data_dir: str | None, n_images: int | None, as_json: bool,
                            results: str | None = None) -> int:  # fmt: skip
    """``advisor recommend --source-dir``: the advice as text or JSON; exit status 0. ``results`` (``--results``)
    replaces the committed ``results/adaptation`` pair cells."""
    advice = recommend(source_dir, data_dir, n_images, results or ADAPTATION_DIR)
    print(json.dumps(advice.to_dict(), indent=2) if as_json else format_advice(advice))
    return 0
