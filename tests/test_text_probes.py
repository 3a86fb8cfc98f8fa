"""Text probes and the text domain gap (issue 23): ``advisor recommend --data-dir x.csv`` measures the user's training
texts only (never the 20 % advisor train holds out) with the image advisor's probes, and the Fréchet distance of
MiniLM embeddings to general English orders real samples as expected. Real SMS spam / AG News / medical texts, 32
tokens: seconds."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from advisor.cli import main
from tests.conftest import DATAPACK

TEXT = DATAPACK / "text"


def _rows(dataset: str, per_class: dict[int, int]) -> list[tuple[str, str]]:
    classes = (TEXT / dataset / "classes.txt").read_text().splitlines()
    with (TEXT / dataset / "train.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for label, n in per_class.items():
        out += [(r["text"], classes[label]) for r in rows if int(r["label"]) == label][:n]
    return out


def _write(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(rows)
    return path


def test_text_probes_see_the_training_texts_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.text import read_texts, registered_texts, text_probes
    from study.probes import text_domain

    data = _write(tmp_path / "sms.csv", _rows("sms_spam", {0: 30, 1: 20}))
    embedded: list[tuple[str, str, list[str]]] = []
    real = text_domain.text_embeddings

    def spy(ds: Any, split: str, idx: np.ndarray, engine: Any, max_length: int) -> np.ndarray:
        source = ds.pool if split == "pool" else ds.test
        embedded.append((ds.name, split, [str(t) for t in source.texts[idx]]))
        return real(ds, split, idx, engine, max_length)

    monkeypatch.setattr(text_domain, "text_embeddings", spy)
    first = text_probes(data, max_length=32)
    texts, labels = read_texts(data)
    with registered_texts(texts, labels, data.resolve(), 32) as ds:
        held_out = {str(t) for t in ds.test.texts}
    users = [e for e in embedded if e[0].startswith("advisor_text_")]
    assert len(held_out) == first["n_held_out"] == 10
    assert [split for _, split, _ in users] == ["pool"] and not held_out & set(users[0][2])
    assert first["n"] == len(users[0][2]) == 40 and first["folds"] == 5
    assert 0.5 < first["linear_probe_accuracy"] <= 1 and 0 < first["linear_probe_std"] < 0.5
    assert 0.0 < first["knn_accuracy"] <= 1 and np.isfinite(first["logme"])
    assert first["reference"] == "ag_news:test" and first["frechet_distance"] > first["floor_at_n"] > 0
    again = text_probes(data, max_length=32)  # the scores come from the cache, the same numbers
    assert again["cached"] and again["linear_probe_accuracy"] == first["linear_probe_accuracy"]


@pytest.mark.parametrize(
    ("per_class", "message"),
    [({0: 12}, "one class"), ({0: 12, 1: 2}, "has 1 training text; a cross-validated probe needs at least 2")],
)
def test_too_few_texts_for_the_probe_folds_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], per_class: dict[int, int], message: str
) -> None:
    data = _write(tmp_path / "few.csv", _rows("sms_spam", per_class))
    assert main(["recommend", "--data-dir", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_frechet_gap_orders_real_text_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """News (a disjoint AG News sample) sits closer to the AG News reference than biomedical abstracts; a
    same-distribution sample of the same size is the floor."""
    from study import config
    from study.cache.features import FeatureEngine
    from study.data import catalog
    from study.probes import text_domain
    from study.probes.similarity import frechet_distance

    monkeypatch.setattr(text_domain, "REFERENCE_N", 200)
    engine = FeatureEngine(config.cache_dir(), config.weights_dirs())

    def load(name: str, size: int) -> Any:
        return catalog.load(name, size, config.data_dirs(), config.cache_dir(), allow_download=False)

    news = text_domain.measure("ag_news", engine, load, max_length=32, n=60)
    medical = text_domain.measure("medical_abstracts", engine, load, max_length=32, n=60)
    assert news["reference_n"] == 200 and news["n"] == medical["n"] == 60
    assert 0 < news["frechet_distance"] < medical["frechet_distance"]
    reference = text_domain.reference_embeddings(engine, load, 32)
    assert text_domain.floor_at(60, reference, engine, load, 32) == pytest.approx(news["frechet_distance"])
    ds = load("medical_abstracts", 32)
    F = text_domain.text_embeddings(ds, "pool", text_domain.sample_index(ds.pool.labels, 60), engine, 32)
    assert medical["frechet_distance"] == pytest.approx(frechet_distance(F, reference, "ledoit_wolf"))
