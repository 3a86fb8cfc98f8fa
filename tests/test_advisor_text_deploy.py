"""``advisor train`` / ``advisor predict`` on text (issue 23): 60 real SMS-spam rows train a linear probe on frozen
MiniLM in seconds, the exported Keras model reproduces the study's predictions, and bad inputs are one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from advisor.cli import main
from tests.conftest import DATAPACK

SMS = DATAPACK / "text" / "sms_spam"


def _sms_rows(n_ham: int = 40, n_spam: int = 20) -> list[tuple[str, str]]:
    classes = (SMS / "classes.txt").read_text().split()
    with (SMS / "train.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    ham = [(r["text"], classes[int(r["label"])]) for r in rows if r["label"] == "0"][:n_ham]
    spam = [(r["text"], classes[int(r["label"])]) for r in rows if r["label"] == "1"][:n_spam]
    return ham + spam


def _write(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("text-train")
    data = _write(tmp / "sms.csv", _sms_rows())
    out = tmp / "model"
    rc = main(["train", "--data-dir", str(data), "--out", str(out), "--strategy", "text_linear_probe",
               "--epochs", "1"])  # fmt: skip
    return {"rc": rc, "out": out, "tmp": tmp, "data": data}


def test_train_exports_a_keras_text_model_with_its_tokenizer(trained: dict[str, Any]) -> None:
    assert trained["rc"] == 0
    out = trained["out"]
    assert sorted(p.name for p in out.iterdir()) == ["advisor-model.json", "labels.json", "metrics.json",
                                                      "model.keras", "tokenizer.json"]  # fmt: skip
    labels = json.loads((out / "labels.json").read_text())
    assert labels["modality"] == "text" and labels["class_names"] == ["ham", "spam"]
    assert labels["strategy"] == "text_linear_probe" and labels["max_length"] == 128 and "token ids" in labels["input"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n_test"] == 12 and metrics["split"]["n_train"] + metrics["split"]["n_val"] == 48
    assert metrics["study_vs_export_max_abs_diff"] < 1e-4  # the exported model is the model the study measured
    assert metrics["keras"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert metrics["test"]["accuracy"] >= 0.75 and "not exported" in metrics["tflite"]


def test_predict_classifies_texts_files_and_csv(trained: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    tmp = trained["tmp"]
    (tmp / "one.txt").write_text("URGENT! You have WON a 1000 cash prize. Call 09061701461 to claim now", "utf-8")
    capsys.readouterr()
    rc = main(["predict", "--model", str(trained["out"]), "--json", "Are we still meeting for lunch tomorrow?",
               str(tmp / "one.txt"), str(trained["data"])])  # fmt: skip
    rows = json.loads(capsys.readouterr().out)
    assert rc == 0 and len(rows) == 2 + 60
    assert rows[0]["class"] == "ham" and rows[1]["class"] == "spam"
    truth = [label for _, label in _sms_rows()]
    assert sum(r["class"] == t for r, t in zip(rows[2:], truth, strict=True)) >= 55  # its own training texts
    rc = main(["predict", "--model", str(trained["out"]), "fine thanks", "   "])
    captured = capsys.readouterr()
    assert rc == 1 and captured.out.startswith("fine thanks: ")
    assert captured.err.strip().count("\n") == 0 and "empty text" in captured.err


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (_sms_rows(3, 3), ("body", "label"), "column"),
        ([("", "ham"), *_sms_rows(3, 3)], ("text", "label"), "empty"),
        (_sms_rows(6, 0), ("text", "label"), "one class"),
        (_sms_rows(6, 2), ("text", "label"), "fewer than 3"),
    ],
)
def test_bad_text_inputs_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: list, header: tuple[str, str], message: str
) -> None:
    data = _write(tmp_path / "bad.csv", rows, header)
    assert main(["train", "--data-dir", str(data), "--out", str(tmp_path / "m"), "--strategy",
                 "text_linear_probe"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and message in err
    assert not (tmp_path / "m").exists()


def test_refusals_before_training(trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = trained["data"]
    cases = [
        (["--strategy", "text_tfidf_logreg"], "cannot be exported"),
        (["--strategy", "linear_probe"], "image strategy"),
        (["--image-size", "64"], "applies to image folders"),
        (["--max-length", "1"], "--max-length"),
    ]
    for extra, message in cases:
        assert main(["train", "--data-dir", str(data), "--out", str(tmp_path / "m"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    # an existing folder of the user's is never replaced; --out inside the input's folder is
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["train", "--data-dir", str(data), "--out", str(mine), "--force", "--strategy",
                 "text_linear_probe"]) == 2  # fmt: skip
    assert "was not written by advisor train" in capsys.readouterr().err and (mine / "notes.txt").is_file()
    assert main(["predict", "--model", str(trained["out"]), "--tflite", "int8", "hello"]) == 2
    assert "no TFLite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "strategy", ["text_scratch_cnn", "text_feature_extraction", "text_fine_tune_top", "text_full_fine_tune"]
)
def test_every_exportable_text_strategy_reloads_to_the_studys_predictions(tmp_path: Path, strategy: str) -> None:
    """Each export path (not only the linear probe's) is trained for real on 60 SMS rows, 1 epoch, 32 tokens; the
    model.keras read back from disk gives the test probabilities the study measured, to 1e-5."""
    import keras

    import study.zoo.text.layers  # noqa: F401 - registers MiniLM's layers for loading
    from advisor.text_deploy import _tokenizer, predict_proba, train_text

    data = _write(tmp_path / "sms.csv", _sms_rows())
    outcome = train_text(data, tmp_path / "model", strategy=strategy, max_length=32, epochs=1)
    trained = outcome.trained
    test_texts = [str(t) for t in trained.data.test.texts[trained.data.test_idx]]
    model = keras.saving.load_model(tmp_path / "model" / "model.keras")
    reloaded = predict_proba(model, _tokenizer(tmp_path / "model" / "tokenizer.json", 32), test_texts)
    assert outcome.labels["strategy"] == strategy and outcome.labels["max_length"] == 32
    assert reloaded.shape == trained.result.test_proba.shape == (12, 2)
    assert np.max(np.abs(reloaded - trained.result.test_proba)) < 1e-5
    assert outcome.metrics["study_vs_export_max_abs_diff"] < 1e-5
