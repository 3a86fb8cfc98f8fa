"""``advisor train`` and ``advisor predict`` on text: the advised text strategy trained with the study's code, exported.

Input: a ``text,label`` CSV or a folder of class sub-folders of ``.txt`` files (``advisor.text.read_texts``). The texts
are written to a temporary CSV (outside ``--data-dir``), registered as a text dataset
(``advisor.text.registered_texts``: a fixed stratified 20 % test split, the one the advisor's text probes leave out)
and trained as one study cell (``CellRunner.train``: the same split, tuning budget, degenerate-model retries and
metrics as every text cell of the study). The output folder holds:

- ``model.keras``: **token ids in** (``{"token_ids", "padding_mask"}``, int32, ``(texts, length)``), class
  probabilities out; MiniLM's layers are registered Keras layers (``study.zoo.text.layers``);
- ``tokenizer.json``: the encoder's shipped tokenizer, beside the model (``study.zoo.text.tokenizer.TextTokenizer``
  with ``labels.json``'s ``max_length`` gives the model's inputs; ``advisor predict`` takes raw strings and does it);
- ``labels.json``, ``metrics.json`` and the marker ``advisor-model.json``, as for images (``advisor.deploy``).

No TFLite files for text (not required; the Keras model is the deployable one). ``text_tfidf_logreg`` is not exported
(its TF-IDF vectoriser is scikit-learn, not Keras): asked for, it is a one-line error; advised, the best exportable
strategy is trained instead and the output says so. The folder rules are ``advisor.deploy``'s: written whole or not
at all, ``--force`` replaces only a folder advisor train wrote, ``--out`` may not be, contain or lie in the input.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from advisor.data import AdvisorError, as_json
from advisor.deploy import TRAIN_GRID, TrainOutcome, _check_out, _umask, finish_model_folder, load_labels
from advisor.text import text_results

DEFAULT_MAX_LENGTH = 128
"""Token budget of an exported text model: the text grid's, so the advice's numbers apply."""
NOT_EXPORTED = {"text_tfidf_logreg": "its TF-IDF vectoriser is scikit-learn, not a Keras model"}
"""Text strategies ``advisor train`` cannot export, and why."""
MIN_PER_CLASS = 3
"""Texts per class needed for a training, a validation and a test text."""


def _check_strategy(name: str) -> None:
    from study.train.strategies import get_strategy

    record = get_strategy(name)
    exportable = ", ".join(_exportable())
    if record.modality != "text":
        raise AdvisorError(f"--strategy {name} is an image strategy; for text pass one of {exportable}")
    if name in NOT_EXPORTED:
        raise AdvisorError(f"--strategy {name} cannot be exported ({NOT_EXPORTED[name]}); pass one of {exportable}")


def _exportable() -> list[str]:
    from study.train.strategies import strategy_records

    return [r.name for r in strategy_records() if r.modality == "text" and r.name not in NOT_EXPORTED]


def _advised(results: str | None, n: int, say: Callable[[str], None]) -> tuple[str, list[dict[str, Any]]]:
    """The best-ranked exportable text strategy at ``n`` texts, and the ranking it came from."""
    from advisor.data import load_results
    from advisor.text import rank_text_strategies

    runs, _ = load_results(text_results(results))
    ranked = rank_text_strategies(runs, n)
    usable = [o for o in ranked if o["strategy"] not in NOT_EXPORTED]
    if not usable:
        raise AdvisorError(f"no exportable text strategy in the results; pass --strategy (one of {_exportable()})")
    if usable[0] is not ranked[0]:
        say(f"note: the advisor's top option {ranked[0]['strategy']} cannot be exported "
            f"({NOT_EXPORTED[ranked[0]['strategy']]}); training the next best, {usable[0]['strategy']}")  # fmt: skip
    return usable[0]["strategy"], ranked


def _check_int(flag: str, value: int, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"between {low} and {high}" if high is not None else f"of at least {low}"
        raise AdvisorError(f"{flag} must be an integer {allowed}, got {value!r}")


def train_text(
    data: str | Path,
    out: str | Path,
    *,
    strategy: str | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    trials: int = 1,
    epochs: int = 10,
    seed: int = 0,
    force: bool = False,
    results: str | None = None,
    say: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Train the advised (or given) text strategy on a CSV / text folder and write the exported model to ``out``."""
    from advisor.text import read_texts, registered_texts
    from study import config
    from study.engine.cell import CellRunner
    from study.engine.grid import MAX_SEED, Cell
    from study.train.deploy import inference_model
    from study.zoo.text import get_text_encoder
    from study.zoo.text.encoder import model_dir

    say = say or (lambda _m: None)
    out = Path(out).expanduser().resolve()
    src = Path(data).expanduser().resolve()
    _check_out(out, src, force)
    for flag, value, low, high in (("--trials", trials, 1, None), ("--epochs", epochs, 1, None),
                                   ("--max-length", max_length, 2, 512), ("--seed", seed, 0, MAX_SEED)):  # fmt: skip
        _check_int(flag, value, low, high)
    if strategy is not None:
        _check_strategy(strategy)
    texts, labels = read_texts(src)  # one-line errors: no text column, empty texts, one class, not UTF-8
    names, counts = np.unique(labels, return_counts=True)
    if counts.min() < MIN_PER_CLASS:
        few = ", ".join(f"{n} ({c})" for n, c in zip(names, counts, strict=True) if c < MIN_PER_CLASS)
        raise AdvisorError(f"{src}: classes {few} have fewer than {MIN_PER_CLASS} texts (one each for training, "
                           "validation and test); add texts or drop those classes")  # fmt: skip
    ranked: list[dict[str, Any]] = []
    chosen = strategy
    if chosen is None:
        chosen, ranked = _advised(results, len(texts), say)
    with registered_texts(texts, labels, src, max_length, seed) as loaded:  # the split the probes also use
        n_pool, n_test = len(loaded.pool), len(loaded.test)
        say(f"training {chosen} on {n_pool} texts ({n_test} held out for test), {max_length} tokens, "
            f"{trials} tuning trial(s)")  # fmt: skip
        cell = Cell(dataset=loaded.name, n_images=n_pool, strategy=chosen, backbone=None, image_size=max_length,
                    seed=seed, epochs=epochs, trials=trials, augment=False, max_test=max(1, n_test), grid=TRAIN_GRID,
                    retries=1)  # fmt: skip
        runner = CellRunner(config.cache_dir(), config.data_dirs(), config.weights_dirs())
        trained = runner.train(cell)
    export = trained.result.export_model
    model = export() if export is not None else None
    if model is None:
        raise AdvisorError(f"strategy {chosen!r} builds no exportable model; pass one of {', '.join(_exportable())}")
    row, m, cdata = trained.row, trained.row["metrics"], trained.data
    if row["degenerate"] and warn:
        warn(f"the trained model is degenerate (test accuracy {row['accuracy']:.3f}, no better than always answering "
             "the largest class); it is exported anyway: try more texts or another --strategy")  # fmt: skip
    test_texts = [str(t) for t in cdata.test.texts[cdata.test_idx]]  # type: ignore[attr-defined]
    tokenizer_file = model_dir(get_text_encoder("minilm_l6")) / get_text_encoder("minilm_l6").tokenizer_file
    class_names = list(cdata.class_names)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    tmp.chmod(0o777 & ~_umask())
    try:
        shutil.copyfile(tokenizer_file, tmp / "tokenizer.json")
        model = inference_model(model)  # no optimizer state, nor the study's optimizer class, in the user's file
        model.save(tmp / "model.keras")
        exported = predict_proba(model, _tokenizer(tmp / "tokenizer.json", max_length), test_texts)
        diff = float(np.max(np.abs(exported - trained.result.test_proba))) if len(exported) else 0.0
        labels_json = {
            "modality": "text",
            "class_names": class_names,
            "strategy": chosen,
            "encoder": "all-MiniLM-L6-v2" if get_strategy_pretrained(chosen) else None,
            "max_length": max_length,
            "image_size": max_length,  # what load_labels checks; for text it is the token budget
            "input": "token ids: {'token_ids', 'padding_mask'} int32 (texts, length), from tokenizer.json beside the "
            "model (study.zoo.text.tokenizer.TextTokenizer(path, max_length)); advisor predict takes raw strings",
            "output": "class probabilities in class_names order",
            "files": {"keras": "model.keras", "tokenizer": "tokenizer.json"},
            "tflite": "not exported for text (not required; use model.keras)",
        }
        metrics = as_json({
            "test": {k: row[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "degenerate")}
            | {"n_test": m["n_test"]},
            "validation": {"accuracy": m["val_accuracy"], "balanced_accuracy": m["val_balanced_accuracy"]},
            "keras": {"mb": (tmp / "model.keras").stat().st_size / 1e6, "accuracy": float(
                np.mean(np.argmax(exported, axis=1) == cdata.y_test)) if len(exported) else None},
            "study_vs_export_max_abs_diff": diff,
            "tflite": "not exported for text",
            "params": row["params"],
            "tuning": {"trials_run": m["trials_run"], "trials_pruned": m["trials_pruned"],
                       "degenerate_retries": m["degenerate_retries"]},
            "split": {"n_train": m["n_train"], "n_val": m["n_val"], "n_test": m["n_test"]},
            "costs": {k: row[k] for k in ("extract_seconds", "train_seconds", "eval_seconds", "trainable_params")},
            "traits": {"n_texts": len(texts), "n_classes": len(names), "imbalance": float(counts.max() / len(texts))},
            "recommendation": {"used": chosen, "override": strategy, "ranked": ranked[:6]},
            "data": str(src),
            "provenance": row["provenance"],
        })  # fmt: skip
        finish_model_folder(tmp, out, labels_json, metrics)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return TrainOutcome(out, labels_json, metrics, trained)


def get_strategy_pretrained(name: str) -> bool:
    from study.train.strategies import get_strategy

    return bool(get_strategy(name).pretrained)


def format_train_text(outcome: TrainOutcome) -> str:
    m, lab = outcome.metrics, outcome.labels
    t = m["test"]
    return "\n".join([
        f"wrote {outcome.out_dir}: {lab['strategy']}, {lab['max_length']} tokens, {len(lab['class_names'])} classes "
        f"({', '.join(lab['class_names'])})",
        f"test accuracy {t['accuracy']:.3f}, balanced accuracy {t['balanced_accuracy']:.3f} on {t['n_test']} held-out "
        "texts",
        f"model.keras ({m['keras']['mb']:.1f} MB) takes token ids; tokenizer.json beside it makes them "
        "(advisor predict takes raw strings); no TFLite for text",
    ])  # fmt: skip


# ------------------------------------------------------------------------------------------------------- predict


def is_text_model(model_dir: str | Path) -> bool:
    try:
        return load_labels(model_dir)[1].get("modality") == "text"
    except AdvisorError:
        return False


def _tokenizer(path: Path, max_length: int) -> Any:
    from study.zoo.text.tokenizer import TextTokenizer

    return TextTokenizer(path, max_length)


def predict_proba(model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """Class probabilities of raw texts: tokenised, each batch padded to its longest text (as in training)."""
    out = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[i : i + batch_size]))
        out.append(np.asarray(model(batch.inputs(), training=False), dtype=np.float64))
    return np.concatenate(out) if out else np.zeros((0, 0))


def text_inputs(items: Sequence[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, text) pairs of the arguments: a ``.txt`` file is one text, a ``.csv`` file its ``text`` column, any
    other argument is itself a text; plus one problem line per argument that gives no text."""
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    for item in items:
        p = Path(item).expanduser()
        is_file = len(item) < 4096 and p.suffix.lower() in (".txt", ".csv") and p.is_file()
        try:
            if is_file and p.suffix.lower() == ".txt":
                pairs.append((str(p), p.read_text(encoding="utf-8")))
            elif is_file:
                with p.open(newline="", encoding="utf-8") as fh:
                    reader = csv.DictReader(fh)
                    if "text" not in (reader.fieldnames or []):
                        problems.append(f"{p} has no 'text' column; put the texts under a text header")
                        continue
                    pairs += [(f"{p}:{i + 2}", row["text"] or "") for i, row in enumerate(reader)]
            else:
                pairs.append((item if len(item) <= 60 else item[:57] + "...", item))
        except UnicodeDecodeError:
            problems.append(f"{p} is not UTF-8 text; save it as UTF-8")
    good = []
    for name, text in pairs:
        if text.strip():
            good.append((name, text))
        else:
            problems.append(f"{name} is an empty text; nothing to classify")
    return good, problems


def predict_text(model_dir: str | Path, items: Sequence[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, problems): the class and probabilities of every text argument (see ``text_inputs``)."""
    import keras

    import study.zoo.text.layers  # noqa: F401 - registers MiniLM's layers for loading

    folder, labels = load_labels(model_dir)
    for f in ("model.keras", "tokenizer.json"):
        if not (folder / f).is_file():
            raise AdvisorError(f"--model {folder} has no {f}; pass a folder written by advisor train on text")
    pairs, problems = text_inputs(items)
    if not pairs:
        return [], problems
    model = keras.saving.load_model(folder / "model.keras")
    proba = predict_proba(model, _tokenizer(folder / "tokenizer.json", int(labels["max_length"])),
                          [t for _, t in pairs])  # fmt: skip
    names = list(labels["class_names"])
    rows = []
    for (name, _), row in zip(pairs, proba, strict=True):
        k = int(np.argmax(row))
        rows.append({"text": name, "class": names[k], "probability": float(row[k]),
                     "probabilities": {n: float(v) for n, v in zip(names, row, strict=True)}})  # fmt: skip
    return rows, problems
