"""From advice to a deployable model: ``advisor train`` and ``advisor predict``.

``train`` measures a user's image folder (``advisor.traits.measure``), takes the advisor's top recommendation
(``--strategy`` / ``--backbone`` override it), and trains it with the study's own protocol and code: the folder is
registered as a dataset, its pool split into stratified train/validation parts and a held-out test part
(``study.engine.cell.CellRunner``: the same sampling, tuning, degenerate-model retries and metrics as every cell of the
study), then writes into the output folder:

- ``model.keras``: raw RGB images (float 0..255, S x S x 3) in, class probabilities out; the backbone's
  preprocessing is inside as the registered layer ``study.zoo.preprocessing.Preprocess``;
- ``model_float32.tflite``, ``model_float16.tflite``, ``model_int8.tflite``: the same model for TFLite (int8:
  full-integer inside, float32 input and output; ``study.train.deploy``);
- ``labels.json``: class names in output order, image size, backbone, strategy, preprocessing mode;
- ``metrics.json``: test accuracy and balanced accuracy, each variant's size / latency / accuracy, the
  hyper-parameters used, the measured traits and the advisor's recommendation.

- ``advisor-model.json``: the marker saying ``advisor train`` wrote the folder (and which files).

Everything is written to a temporary sibling folder and renamed at the end, so the output folder is either
complete or untouched. Nothing of the user's is ever removed: ``--force`` replaces only a folder holding the marker,
``labels.json`` and ``metrics.json`` and nothing else; an ``--out`` that is, contains or lies inside ``--data-dir``
is refused; writability of ``--out`` and the cache is probed before training. ``predict`` decodes images with the
training code (``study.data.readers.decode_image``); unreadable files are reported one by one, the rest predicted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from advisor.data import OTHER, AdvisorError, as_json
from study import __version__
from study.errors import StudyError
from study.train.deploy import VARIANTS

TRAIN_GRID = "advisor-train"
"""The ``grid`` label of the cell ``advisor train`` runs (it is never stored)."""
FALLBACK_BACKBONE = "mobilenet_v2"
"""Backbone for an overridden pretrained strategy when the advisor has no option with a backbone."""


@dataclass
class TrainOutcome:
    out_dir: Path
    labels: dict[str, Any]
    metrics: dict[str, Any]
    trained: Any  # study.engine.cell.TrainedCell: the model is trained.result.model()


MARKER = "advisor-model.json"
"""Written into every model folder by ``advisor train``: ``--force`` replaces only a folder that holds it."""
MODEL_FILES = frozenset({"model.keras", *(f"model_{v}.tflite" for v in VARIANTS), "labels.json", "metrics.json",
                         "tokenizer.json", MARKER})  # fmt: skip (tokenizer.json: a text model, advisor.text_deploy)
"""Every name ``advisor train`` may write into a model folder: ``--force`` never removes anything else."""


def is_model_folder(folder: Path) -> bool:
    """True when ``folder`` was written by ``advisor train`` and holds nothing else (marker + labels + metrics)."""
    try:
        names = {e.name for e in os.scandir(folder)}
    except OSError:
        return False
    return {MARKER, "labels.json", "metrics.json"} <= names and names <= MODEL_FILES


def _check_out(out: Path, data_dir: Path, force: bool) -> None:
    """Refuse, before any training, an output folder that would put anything the user owns at risk."""
    new = "pass a new folder outside it"
    if out == data_dir or out in data_dir.parents:
        where = "is" if out == data_dir else "is a folder above"
        raise AdvisorError(f"--out {out} {where} --data-dir {data_dir}; writing the model there would replace your "
                           f"images: {new}")  # fmt: skip
    if data_dir in out.parents:
        raise AdvisorError(f"--out {out} is inside --data-dir {data_dir}; the model would mix with your images: {new}")
    if out.exists() and not out.is_dir():
        raise AdvisorError(f"--out {out} exists and is not a folder; pass a new folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise AdvisorError(f"--out {out} exists and is not empty; pass --force to replace a model folder written "
                               "by advisor train, or another folder")  # fmt: skip
        if not is_model_folder(out):
            foreign = sorted(e.name for e in os.scandir(out) if e.name not in MODEL_FILES)
            why = f"it holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}" if foreign else \
                f"it lacks {MARKER}"  # fmt: skip
            raise AdvisorError(f"--out {out} was not written by advisor train ({why}); --force only replaces a model "
                               "folder advisor train wrote: pass a new or empty folder")  # fmt: skip
    from study.config import check_writable

    check_writable(out.parent, f"--out {out}: its folder", "pass a folder you can write to")


def _choose(rec: Any, strategy: str | None, backbone: str | None) -> tuple[str, str, Any]:
    """(strategy, backbone, the advisor option it corresponds to or None) after the overrides."""
    from study.engine.store import NO_BACKBONE
    from study.train.strategies import get_strategy

    options = [o for o in rec.options if strategy is None or o.strategy == strategy]
    options = [o for o in options if backbone is None or o.backbone in (backbone, NO_BACKBONE)]
    chosen = options[0] if options else None
    name = strategy or (chosen.strategy if chosen else rec.best.strategy)
    if not get_strategy(name).uses_backbone:
        return name, NO_BACKBONE, chosen
    if backbone is None:
        with_backbone = [o.backbone for o in rec.options if o.backbone != NO_BACKBONE]
        backbone = chosen.backbone if chosen and chosen.backbone != NO_BACKBONE else None
        backbone = backbone or (with_backbone[0] if with_backbone else FALLBACK_BACKBONE)
    return name, backbone, chosen


def _recommendation(rec: Any, chosen: Any, strategy: str, backbone: str, overrides: dict[str, Any]) -> dict:
    top = rec.best
    return as_json({
        "top": {"strategy": top.strategy, "backbone": top.backbone, "expected_accuracy": top.accuracy,
                "low": top.low, "high": top.high},
        "used": {"strategy": strategy, "backbone": backbone,
                 "expected_accuracy": chosen.accuracy if chosen else None,
                 "rank": chosen.rank if chosen else None},
        "overrides": {k: v for k, v in overrides.items() if v is not None},
        "options": [{"rank": o.rank, "strategy": o.strategy, "backbone": o.backbone, "accuracy": o.accuracy,
                     "low": o.low, "high": o.high, "cost_minutes": o.cost_minutes} for o in rec.options[:6]],
        "traits": rec.traits, "assumed": rec.assumed, "extrapolation": rec.extrapolation, "trust": rec.trust,
        "interval": rec.interval, "fitted_on": rec.fitted_on,
    })  # fmt: skip


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def finish_model_folder(tmp: Path, out: Path, labels: dict[str, Any], metrics: dict[str, Any]) -> None:
    """Write labels.json, metrics.json and the marker into the finished temporary folder, then move it to ``out``
    (image and text models alike: the marker is what lets a later ``--force`` replace the folder)."""
    (tmp / "labels.json").write_text(json.dumps(as_json(labels), indent=2) + "\n")
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    files = sorted(p.name for p in tmp.iterdir())
    (tmp / MARKER).write_text(json.dumps({"written_by": "advisor train", "version": __version__,
                                          "files": files}, indent=2) + "\n")  # fmt: skip
    _replace_folder(tmp, out)


def _replace_folder(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out``; an existing ``out`` (allowed by --force) goes only after that.

    Only an empty folder or one ``advisor train`` wrote is ever replaced: checked before training and again
    here, in case something was put into ``out`` while the model trained.
    """
    old = None
    if out.exists():
        if out.is_dir() and any(out.iterdir()) and not is_model_folder(out):
            raise AdvisorError(f"--out {out} changed while the model trained and is no longer a folder advisor train "
                               "wrote; nothing was replaced: pass a new folder")  # fmt: skip
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / "previous")
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def train(
    data_dir: str | Path,
    out: str | Path,
    *,
    domain: str | None = None,
    strategy: str | None = None,
    backbone: str | None = None,
    trials: int = 1,
    image_size: int | None = None,
    epochs: int = 10,
    seed: int = 0,
    force: bool = False,
    results: str | None = None,
    measure_gap: bool = True,
    pilot_minutes: float | None = None,
    warn: Callable[[str], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Train the advised (or given) strategy on the folder and write the deployable model to ``out``.

    ``pilot_minutes``: pilot the probe advisor's top candidates first (``advisor.pilot.run_pilot``) and train the
    pilot's first choice."""
    from advisor.fitted import load_fitted
    from advisor.model import Traits
    from advisor.traits import check_folder, folder_dataset_name, measure
    from study import config
    from study.data import catalog as study_data
    from study.data.datasets import register_image_folder, unregister_dataset
    from study.engine.cell import CellRunner
    from study.engine.grid import IMAGE_SIZES, MAX_SEED, Cell
    from study.train.strategies import get_strategy
    from study.zoo.backbones import check_image_size, get_backbone

    say = say or (lambda _m: None)
    out = Path(out).expanduser().resolve()  # symlinks resolved: --out may not reach --data-dir through one
    root = check_folder(data_dir)
    _check_out(out, root, force)  # every check that needs no training comes first
    if strategy is not None:
        get_strategy(strategy)
    if backbone is not None:
        get_backbone(backbone)
    ranges = (("--trials", trials, 1, None), ("--epochs", epochs, 1, None), ("--image-size", image_size, *IMAGE_SIZES),
              ("--seed", seed, 0, MAX_SEED))  # the sweep's ranges (study.engine.grid)  # fmt: skip
    for flag, value, low, high in ranges:
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
            allowed = f"between {low} and {high}" if high else f"of at least {low}"
            raise AdvisorError(f"{flag} must be an integer {allowed}, got {value!r}")
    if backbone is not None and image_size is not None:
        check_image_size(get_backbone(backbone), image_size)
    if (root / "train").is_dir() and (root / "test").is_dir():
        for v in ("validation", "val"):
            if (root / v).is_dir():
                say(f"note: {v}/ joins train/ as training images; the study draws its own stratified validation "
                    "split from them, and test/ stays held out")  # fmt: skip
    domain_label = domain or OTHER
    # counts, classes and enough images per class for train/validation/test: fast, no TensorFlow
    measured = measure(root, domain_label, measure_gap=False)

    advisor, runs, similarity, _ = load_fitted(results)
    advisor._check_domain(domain_label)
    if domain is None:
        say("note: no --domain given: the advice rests on the measured domain gap")
    if measure_gap:
        say("measuring the domain gap with the advisor's backbones")
        measured = measure(root, domain_label, gap_scales=advisor.gap_scales_, image_size=image_size, warn=warn)
    name = folder_dataset_name(root)
    try:
        register_image_folder(name, root, domain_label)
        small = study_data.load(name, 32, config.data_dirs(), config.cache_dir(), allow_download=False)  # measured
        n_pool, n_test = len(small.pool), len(small.test)
        # A registered backbone the study has no results for yet (e.g. a new one) is trained as asked; the advice
        # recorded beside it is then the advisor's for the backbones it has measured, and "used" has no estimate.
        advised = backbone if backbone is None or backbone in advisor.backbones_ else None
        if advised != backbone:
            say(f"note: the study has no results for backbone {backbone!r} yet: no estimate for it, training as asked")
        rec = advisor.recommend(Traits(n_images=n_pool, domain=domain_label, n_classes=measured["n_classes"],
                                       image_size=image_size, gap=measured["gap"], imbalance=measured["imbalance"],
                                       backbone=advised))  # fmt: skip
        probe_pick = None
        if strategy is None and backbone is None:  # the ranking advisor recommend --data-dir leads with
            from advisor.pilot import pilot_gain, run_pilot
            from advisor.probes import probe_ranking

            say("probing the frozen backbones on your training images")
            traits = {"n_images": n_pool, "n_classes": measured["n_classes"], "gap": measured["gap"]}
            gain = pilot_gain(runs, similarity, results) if pilot_minutes is not None else None
            _, ranking = probe_ranking(root, advisor, runs, similarity, traits, results, image_size=image_size,
                                       warn=warn, progress=False, ranking_only=True, gain=gain)  # fmt: skip
            if ranking is not None and pilot_minutes is not None:
                say(f"piloting the top candidates within {pilot_minutes:g} min")
                piloted = run_pilot(root, ranking, traits, gain, minutes=pilot_minutes,
                                    image_size=image_size or advisor.default_size_, seed=seed, epochs=epochs,
                                    progress=False, warn=warn)  # fmt: skip
                ranking = piloted["ranking"]
            measured_n = ranking[~ranking["extrapolated"]] if ranking is not None else None
            if measured_n is not None and len(measured_n):
                top = measured_n.iloc[0]
                probe_pick = {"strategy": str(top["strategy"]), "backbone": str(top["backbone"]),
                              "expected_accuracy": float(top["accuracy"]), "low": float(top["low"]),
                              "high": float(top["high"])}  # fmt: skip
                if pilot_minutes is not None and "pilot" in top and top["pilot"] == top["pilot"]:
                    probe_pick["pilot_accuracy_at_size"] = {"accuracy": float(top["pilot"]),
                                                            "size": int(piloted["size"]),
                                                            "scored_images": int(piloted["scored"])}  # fmt: skip
                say(f"the probe-based advisor ranks {probe_pick['strategy']} / {probe_pick['backbone']} first "
                    f"(expected {probe_pick['expected_accuracy']:.3f})")  # fmt: skip
        chosen_strategy, chosen_backbone, option = _choose(
            rec, probe_pick["strategy"] if probe_pick else strategy, probe_pick["backbone"] if probe_pick else backbone)
        size = int(image_size or rec.traits["image_size"])
        uses_backbone = get_strategy(chosen_strategy).uses_backbone
        spec = get_backbone(chosen_backbone if uses_backbone else FALLBACK_BACKBONE)
        if uses_backbone:
            check_image_size(spec, size)
        say(f"training {chosen_strategy}" + (f" / {chosen_backbone}" if uses_backbone else "")
            + f" at {size} px on {n_pool} images ({n_test} held out for test), {trials} tuning trial(s)")  # fmt: skip
        cell = Cell(dataset=name, n_images=n_pool, strategy=chosen_strategy,
                    backbone=chosen_backbone if uses_backbone else None, image_size=size, seed=seed, epochs=epochs,
                    trials=trials, augment=False, max_test=max(1, n_test), grid=TRAIN_GRID, retries=1)  # fmt: skip
        runner = CellRunner(config.cache_dir(), config.data_dirs(), config.weights_dirs())
        trained = runner.train(cell)
        model = trained.result.model()
        if model is None:
            raise AdvisorError(f"strategy {chosen_strategy!r} builds no deployable model")
        if trained.row["degenerate"] and warn:
            warn(f"the trained model is degenerate (test accuracy {trained.row['accuracy']:.3f}, no better than "
                 "always answering the largest class); it is exported anyway: try more images, another strategy "
                 "or a larger --image-size")  # fmt: skip

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the model folder is an ordinary one (0755 by umask 022)
        try:
            say("exporting model.keras and TFLite float32 / float16 / int8 and measuring them")
            deploy = runner.deployment(trained, out_dir=tmp)
            failed = [v for v in VARIANTS if "error" in deploy[f"tflite_{v}"]]
            for v in failed:
                if warn:
                    warn(f"TFLite {v} conversion failed: {deploy[f'tflite_{v}']['error']}")
            data = trained.data
            from study.train.deploy import keras_predict

            exported = keras_predict(model, data.test.images[data.test_idx])
            study_diff = float(np.max(np.abs(exported - trained.result.test_proba))) if len(exported) else 0.0
            mode = spec.preprocessing if uses_backbone else "none"
            labels = {
                "class_names": list(data.class_names),
                "image_size": size,
                "backbone": chosen_backbone,
                "strategy": chosen_strategy,
                "preprocessing": mode,
                "input": f"float32 RGB 0..255, shape [batch, {size}, {size}, 3] (TFLite: batch 1); decode and "
                "resize with study.data.loaders.decode_image",
                "output": "class probabilities in class_names order",
                "tflite_int8_io": deploy["int8_io"],
                "files": {"keras": "model.keras",
                          **{v: f"model_{v}.tflite" for v in VARIANTS if v not in failed}},
            }  # fmt: skip
            row = trained.row
            m = row["metrics"]
            metrics = as_json({
                "test": {k: row[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "log_loss",
                                             "degenerate")} | {"n_test": m["n_test"]},
                "validation": {"accuracy": m["val_accuracy"], "balanced_accuracy": m["val_balanced_accuracy"]},
                "variants": deploy,
                "study_vs_export_max_abs_diff": study_diff,
                "params": row["params"],
                "tuning": {"trials_run": m["trials_run"], "trials_pruned": m["trials_pruned"],
                           "best_val_score": m["best_val_score"], "degenerate_retries": m["degenerate_retries"]},
                "split": {"n_train": m["n_train"], "n_val": m["n_val"], "n_test": m["n_test"],
                          "train_balance": m["train_balance"]},
                "costs": {k: row[k] for k in ("extract_seconds", "train_seconds", "eval_seconds", "trainable_params",
                                              "total_params", "model_mb", "latency_ms")},
                "traits": measured,
                "recommendation": _recommendation(rec, option, chosen_strategy, chosen_backbone,
                                                  {"strategy": strategy, "backbone": backbone,
                                                   "image_size": image_size}),
                "probe_advice": probe_pick,  # the probe-based advisor's first choice (None without cell probes)
                "data_dir": str(root),
                "cell_key": cell.key,
                "provenance": row["provenance"],
                "curves": row["curves"],
            })  # fmt: skip
            finish_model_folder(tmp, out, labels, metrics)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return TrainOutcome(out, labels, metrics, trained)
    finally:
        unregister_dataset(name)


def format_train(outcome: TrainOutcome) -> str:
    m, lab = outcome.metrics, outcome.labels
    t = m["test"]
    lines = [f"wrote {outcome.out_dir}: {lab['strategy']} / {lab['backbone']} at {lab['image_size']} px, "
             f"{len(lab['class_names'])} classes ({', '.join(lab['class_names'])})",
             f"test accuracy {t['accuracy']:.3f}, balanced accuracy {t['balanced_accuracy']:.3f} "
             f"on {t['n_test']} held-out images",
             "", f"{'format':<16}{'MB':>8}{'latency ms':>12}{'accuracy':>10}"]  # fmt: skip
    v = m["variants"]
    for key in ("keras", *(f"tflite_{x}" for x in VARIANTS)):
        r = v[key]
        if "error" in r:
            lines.append(f"{key:<16}failed: {r['error']}")
        else:
            lines.append(f"{key:<16}{r['mb']:>8.2f}{r['latency_ms']:>12.2f}{r['accuracy']:>10.3f}")
    if v.get("int8_accuracy_delta") is not None:
        lines.append(f"int8 accuracy delta vs float32: {100 * v['int8_accuracy_delta']:+.1f} points")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------- predict


def load_labels(model_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    folder = Path(model_dir).expanduser()
    path = folder / "labels.json"
    if not path.is_file():
        raise AdvisorError(f"--model {folder} has no labels.json; pass a folder written by advisor train")
    try:
        labels = json.loads(path.read_text())
    except ValueError:
        labels = None
    if not isinstance(labels, dict) or not {"class_names", "image_size"} <= set(labels):
        raise AdvisorError(f"{path} is not a labels.json written by advisor train")
    return folder, labels


def image_files(paths: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """The image files named by ``paths`` (a folder stands for every image under it, sorted) and one problem line
    per path that names no image (missing, or a folder without images)."""
    from study.data.readers import IMAGE_EXTENSIONS

    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(Path(d) / f for d, _, names in os.walk(p) for f in names
                           if Path(f).suffix.lower() in IMAGE_EXTENSIONS and not f.startswith("."))  # fmt: skip
            if not found:
                problems.append(f"folder {p} holds no images (.jpg, .png, ...); pass image files or a folder of them")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            problems.append(f"image {p} does not exist")
    return files, problems


def predict(
    model_dir: str | Path, images: Sequence[str | Path], tflite: str | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, problems): top class and probabilities of every readable image, decoded and resized exactly as in
    training, and one line per image (or argument) that could not be read. A folder means every image under it.

    One bad file never costs the predictions of the others; a problem with the model itself is an ``AdvisorError``.
    """
    from study.data.readers import decode_image

    folder, labels = load_labels(model_dir)
    names, size = list(labels["class_names"]), int(labels["image_size"])
    if tflite is not None:
        if tflite not in VARIANTS:
            raise AdvisorError(f"--tflite must be one of {', '.join(VARIANTS)}, got {tflite!r}")
        path = folder / f"model_{tflite}.tflite"
        if not path.is_file():
            raise AdvisorError(f"--model {folder} has no {path.name} (its conversion failed or it was removed)")
    else:
        path = folder / "model.keras"
        if not path.is_file():
            raise AdvisorError(f"--model {folder} has no model.keras; pass a folder written by advisor train")
    files, problems = image_files(images)
    good, decoded = [], []
    for p in files:
        try:
            decoded.append(decode_image(p, size))
        except StudyError as error:
            problems.append(str(error))
            continue
        good.append(p)
    if not good:
        return [], problems
    batch = np.stack(decoded).astype(np.float32)
    if tflite is not None:
        from study.train.deploy import tflite_interpreter, tflite_predict

        proba = tflite_predict(tflite_interpreter(path), batch)
    else:
        import keras

        import study.zoo.preprocessing  # noqa: F401 - registers the Preprocess layer
        from study.train.deploy import keras_predict

        proba = keras_predict(keras.saving.load_model(path), batch)
    out = []
    for p, row in zip(good, proba, strict=True):
        k = int(np.argmax(row))
        out.append({"image": str(p), "class": names[k], "probability": float(row[k]),
                    "probabilities": {n: float(v) for n, v in zip(names, row, strict=True)}})  # fmt: skip
    return out, problems
