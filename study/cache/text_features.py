"""Frozen text-encoder outputs on top of the activation cache: computed once per text, then read from disk.

The text analogue of ``study.cache.features.FeatureEngine``: mean-pooled sentence embeddings (``linear_probe``,
``feature_extraction``, the head phase of both fine-tunes) and hidden states at a block boundary (the frozen
prefix of ``fine_tune_top``) are stored in the same ``ActivationCache`` (one row per text of a split, filled
lazily, locked against concurrent workers), keyed by the dataset's content, the split, the encoder and its
weights checksum, the boundary and the token budget. Hidden states are stored padded to the token budget with
zeros; the padding mask is recomputed from the tokenizer (cheap and deterministic), never stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from study.cache.activations import ActivationCache, cache_key
from study.data.cell_data import CellData
from study.zoo.text import TextEncoderSpec, TextTokenizer, build_text_encoder, embed, hidden_model, load_tokenizer
from study.zoo.text.encoder import batches, inference_fn

POOLED = "mean_pool"  # the boundary name of the sentence embedding (mean over real tokens, L2-normalised)

_FROZEN: dict[tuple[str, str], Any] = {}
_TOKENIZERS: dict[tuple[str, int], TextTokenizer] = {}


def tokenizer(spec: TextEncoderSpec, max_length: int) -> TextTokenizer:
    """The encoder's tokenizer truncating at ``max_length`` (one per process and budget)."""
    key = (spec.name, max_length)
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = load_tokenizer(spec, max_length)
    return _TOKENIZERS[key]


def frozen_encoder(spec: TextEncoderSpec, cache_dir: Path) -> Any:
    """One pretrained encoder per process, used only for inference (strategies that train build their own)."""
    key = (spec.name, str(cache_dir))
    if key not in _FROZEN:
        model = build_text_encoder(spec, "pretrained", cache_dir)
        model.trainable = False
        _FROZEN[key] = model
    return _FROZEN[key]


def _texts(data: CellData, split: str) -> np.ndarray:
    return data.pool.texts if split == "pool" else data.test.texts  # type: ignore[attr-defined]


def _key(data: CellData, spec: TextEncoderSpec, split: str, layer: str, max_length: int) -> str:
    return cache_key(data=data.fingerprint, split=split, encoder=spec.name, weights=spec.weights_sha256,
                     layer=layer, max_length=max_length)  # fmt: skip


def embeddings(
    cache: ActivationCache, data: CellData, spec: TextEncoderSpec, cache_dir: Path, split: str, indices: np.ndarray,
    max_length: int,
) -> np.ndarray:  # fmt: skip
    """Unit-norm mean-pooled embeddings ``(len(indices), hidden)`` of a split's rows (cached)."""
    tok = tokenizer(spec, max_length)

    def extractor() -> Any:
        encoder = frozen_encoder(spec, cache_dir)
        return lambda texts, rows: embed(encoder, tok, list(texts))

    meta = {"dataset": data.dataset, "split": split, "encoder": spec.name, "layer": POOLED, "max_length": max_length}
    return cache.get(_key(data, spec, split, POOLED, max_length), _texts(data, split), indices, extractor,
                     lazy_extract=True, meta=meta)  # fmt: skip


def hidden_states(
    cache: ActivationCache, data: CellData, spec: TextEncoderSpec, cache_dir: Path, split: str, indices: np.ndarray,
    boundary: str, max_length: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Hidden states at ``boundary`` ``(n, max_length, hidden)`` (zero-padded) and their padding masks (cached)."""
    tok = tokenizer(spec, max_length)

    def extractor() -> Any:
        model = hidden_model(frozen_encoder(spec, cache_dir), boundary)
        prefix = inference_fn(model)

        def run(texts: np.ndarray, rows: np.ndarray, model: Any = model) -> np.ndarray:
            # ``model`` as a default keeps the prefix alive while run() lives (inference_fn holds it weakly)
            ids = tok.ids(list(texts))
            out = np.zeros((len(ids), max_length, spec.hidden), dtype="float32")
            for idx in batches([len(r) for r in ids], 32):
                batch = tok.pad([ids[i] for i in idx])
                got = np.asarray(prefix(batch.inputs()), dtype="float32")
                out[idx, : got.shape[1]] = got
            return out

        return run

    meta = {"dataset": data.dataset, "split": split, "encoder": spec.name, "layer": boundary, "max_length": max_length}
    texts = _texts(data, split)
    acts = cache.get(_key(data, spec, split, boundary, max_length), texts, indices, extractor, lazy_extract=True,
                     meta=meta)  # fmt: skip
    return acts, tok.pad(tok.ids(list(texts[indices])), max_length).padding_mask
