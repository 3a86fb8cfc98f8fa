"""Text as a modality of the study: the data-pack text datasets, every text strategy on a tiny cell, no test text
in training, one-line errors for bad text files (real data from ../shared/datapack/text, the real MiniLM encoder)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from study.cache.features import FeatureEngine
from study.config import WeightsDirs, cache_dir, data_dirs, keras_home
from study.data import catalog
from study.data.cell_data import CellData
from study.data.datasets import TEXT_DATASETS, get_dataset
from study.data.sampling import cap_test, train_val_split
from study.data.text import TextSet, read_text_dataset, register_text_csv
from study.engine.grid import expand, get_grid
from study.errors import StudyError
from study.train.strategies import strategy_records
from study.train.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]
TEXT_STRATEGIES = [s.name for s in strategy_records() if s.modality == "text"]
TOKENS = 16  # SMS texts are short; 16 tokens keep every tiny cell's encoder passes cheap


def _cell(ds, n: int, seed: int = 0, max_test: int = 60) -> CellData:
    tr, va = train_val_split(ds.pool.labels, n, seed, dataset=ds.name, groups=ds.pool.groups)
    return CellData(ds.name, ds.domain, ds.class_names, ds.source_checksum, TOKENS, ds.pool, ds.test, tr, va,
                    cap_test(ds.test.labels, max_test, seed=0))  # fmt: skip


@pytest.fixture(scope="module")
def sms(datapack):
    return catalog.load("sms_spam", TOKENS, data_dirs(), cache_dir())


@pytest.fixture(scope="module")
def tiny(sms):
    """One tiny cell shared by the strategy tests: 16 texts (12 train, 4 validation), 20 test texts."""
    return _cell(sms, 16, max_test=20)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    # activations in a fresh folder (the test computes what it reads); the converted encoder from the shared cache
    return FeatureEngine(tmp_path_factory.mktemp("text-acts"), WeightsDirs(keras_home(), cache_dir()))


def test_text_datasets_are_records_with_sources():
    assert len(TEXT_DATASETS) == 7
    for name in TEXT_DATASETS:
        spec = get_dataset(name)
        assert spec.modality == "text" and spec.format == "text_csv"
        assert spec.citation and spec.license and spec.homepage.startswith("http") and len(spec.class_names) >= 2
    assert get_dataset("mnist").modality == "image"  # the default: image records are unchanged


def test_no_text_crosses_splits_and_duplicates_leave_the_test_side(datapack):
    dropped = {}
    for name in TEXT_DATASETS:
        spec = get_dataset(name)
        _, pool, test, splits = read_text_dataset(spec, datapack / spec.folder)
        assert not set(pool.texts.tolist()) & set(test.texts.tolist()), name
        assert (len(pool), len(test)) == spec.expected_counts
        dropped[name] = (splits.dropped_duplicates, splits.duplicate_texts)
    assert dropped["sms_spam"] == (111, 98)  # 98 distinct texts, some repeated in the test file
    assert dropped["trec"] == (9, 9)
    assert dropped["20newsgroups"] == (2, 2)
    assert dropped["sst2"] == dropped["ag_news"] == (0, 0)


def test_identical_texts_stay_on_one_side_of_the_train_validation_carving(sms):
    data = _cell(sms, 400)
    train = set(sms.pool.texts[data.train_idx].tolist())
    assert not train & set(sms.pool.texts[data.val_idx].tolist())


@pytest.mark.parametrize("name", TEXT_STRATEGIES)
def test_every_text_strategy_runs_a_tiny_cell(tiny, engine, name):
    from study.train.strategies import get_strategy

    data = tiny
    result = get_strategy(name).run(data, None, TrainConfig(epochs=1, seed=0), engine)
    assert result.test_proba.shape == (len(data.test_idx), 2)
    assert result.val_proba.shape == (len(data.val_idx), 2)
    assert np.allclose(result.test_proba.sum(axis=1), 1.0, atol=1e-4)
    assert result.trainable_params > 0


@pytest.mark.parametrize("name", ["text_tfidf_logreg", "text_linear_probe", "text_scratch_cnn"])
def test_no_test_text_or_label_reaches_training(sms, engine, name):
    """Poison the test split (other texts, shuffled labels, its own fingerprint): what was learnt, read on the
    validation texts, must not move, and the TF-IDF vocabulary must not hold a word only the test texts have."""
    from study.train.strategies import get_strategy

    data = _cell(sms, 40, max_test=20)
    rng = np.random.default_rng(1)
    texts = np.array([f"zqxjv poison {t[::-1]}" for t in sms.test.texts], dtype=object)
    poisoned = TextSet(texts, rng.permutation(sms.test.labels), sms.test.ids, sms.test.groups)
    bad = replace(data, test=poisoned, fingerprint=data.fingerprint + "-poisoned")
    cfg = TrainConfig(epochs=1, seed=0)
    clean, dirty = get_strategy(name).run(data, None, cfg, engine), get_strategy(name).run(bad, None, cfg, engine)
    np.testing.assert_allclose(clean.val_proba, dirty.val_proba, atol=1e-6)
    if name == "text_tfidf_logreg":
        assert clean.info["vocabulary"] == dirty.info["vocabulary"]


def test_the_text_head_learns_in_a_two_epoch_cell(datapack, engine):
    """text_feature_extraction's head (Adam on frozen embeddings) matches the linear probe on the same embeddings
    at the text_smoke budget (TREC, 6 classes, n=60, 2 epochs). A Glorot-initialised head ended near its random
    start there (test accuracy 0.19, degenerate); see text_strategies.HEAD_ZERO_INIT."""
    from study.quality import prediction_summary
    from study.train.strategies import get_strategy

    trec = catalog.load("trec", 32, data_dirs(), cache_dir())
    tr, va = train_val_split(trec.pool.labels, 60, 0, dataset=trec.name, groups=trec.pool.groups)
    data = CellData(trec.name, trec.domain, trec.class_names, trec.source_checksum, 32, trec.pool, trec.test, tr, va,
                    cap_test(trec.test.labels, 100, seed=0))  # fmt: skip
    cfg = TrainConfig(epochs=2, seed=0)
    y = trec.test.labels[data.test_idx]
    acc = {}
    for name in ("text_linear_probe", "text_feature_extraction"):
        proba = get_strategy(name).run(data, None, cfg, engine).test_proba
        acc[name] = prediction_summary(y, proba.argmax(axis=1), data.n_classes)["accuracy"]
    assert acc["text_linear_probe"] > 0.45, acc  # the embeddings do separate TREC's question types
    assert acc["text_feature_extraction"] >= acc["text_linear_probe"] - 0.1, acc


def test_grids_pair_text_strategies_with_text_datasets_only():
    cells, _ = expand(get_grid("text"))
    assert {c.strategy for c in cells} == set(TEXT_STRATEGIES)
    assert {c.dataset for c in cells} == set(TEXT_DATASETS)
    assert all(c.backbone is None and c.image_size == 128 for c in cells)
    mixed = replace(get_grid("text_smoke"), datasets=("trec", "mnist"), strategies=("text_linear_probe",
                    "linear_probe"), backbones=("mobilenet_v2",))  # fmt: skip
    pairs = {(c.dataset, c.strategy) for c in expand(mixed)[0]}
    assert pairs == {("trec", "text_linear_probe"), ("mnist", "linear_probe")}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("body,label\nhello,a\nbye,b\n", "no 'text' column"),
        ("text,label\nhello,a\n   ,b\nbye,b\n", "line 3 has an empty text"),
        ("text,label\nhello,a\nbye,a\nagain,a\n", "has one class"),
    ],
)
def test_bad_text_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "tickets.csv"
    path.write_text(content)
    spec = register_text_csv("tickets_test", path)
    try:
        with pytest.raises(StudyError, match=message):
            catalog.load("tickets_test", TOKENS, [], cache_dir(), allow_download=False)
    finally:
        from study.data.datasets import unregister_dataset

        unregister_dataset(spec.name)


def test_a_bad_text_file_stops_a_sweep_in_one_line(tmp_path):
    """Through the command line: exit 2, one `error:` line, no traceback, nothing trained."""
    (tmp_path / "tickets.csv").write_text("body,label\nhello,a\nbye,b\n")
    (tmp_path / "plug_tickets.py").write_text(
        "from study.data.text import register_text_csv\n"
        f"register_text_csv('tickets', {str(tmp_path / 'tickets.csv')!r})\n"
    )
    (tmp_path / "grids.toml").write_text(
        '[grids.t]\ndatasets = ["tickets"]\nsizes = [4]\nstrategies = ["text_tfidf_logreg"]\nbackbones = []\n'
        "seeds = [0]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "study.run", "--grid", "t", "--grid-file", str(tmp_path / "grids.toml"), "--plugin",
         "plug_tickets", "--store", f"sqlite:///{tmp_path / 's.db'}", "--log-dir", str(tmp_path / "logs")],
        cwd=REPO, capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)},
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and "no 'text' column" in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr


def test_text_batches_of_every_length_train_in_one_fit():
    """Batches padded to their own longest text have different lengths; the training input must accept them all
    (Keras' PyDataset fixed the length from its first two batches: 3 cells of the first text-grid run failed)."""
    import keras

    from study.train.text_strategies import _batches
    from study.train.training import compile_classifier

    lengths = np.array([16] * 64 + [4] * 32)
    inputs = {"token_ids": np.ones((96, 16), dtype="int32"), "padding_mask": np.ones((96, 16), dtype="int32")}
    y = np.arange(96) % 2
    dataset, steps = _batches(inputs, lengths, y, 32, True, 0)
    assert steps == 3 and sorted(x["token_ids"].shape[1] for x, _ in dataset) == [4, 16, 16]
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    mask = keras.Input((None,), dtype="int32", name="padding_mask")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(2, 4)(ids))
    model = keras.Model({"token_ids": ids, "padding_mask": mask}, keras.layers.Dense(2, activation="softmax")(pooled))
    history = compile_classifier(model, 1e-3).fit(dataset, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
