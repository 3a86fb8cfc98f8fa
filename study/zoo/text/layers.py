"""The Keras 3 layers of a BERT sentence encoder (all-MiniLM-L6-v2 and any BERT of the same shape).

Written with ``keras.ops`` only, the way the original BERT computes it (Devlin et al. 2019, and Hugging Face's
``BertModel`` whose weights these layers load): token + position + segment embeddings and a LayerNorm, then
post-norm transformer layers (``LayerNorm(x + Attention(x))``, ``LayerNorm(x + FFN(x))``) with the exact erf GELU,
then sentence-transformers' mean pooling over non-padding tokens and L2 normalisation. keras-hub's ``BertBackbone``
is not used: it takes the tanh GELU approximation, which moves MiniLM's embeddings by ~3e-4.

Every layer takes the padding mask (1 = real token, 0 = padding) as an explicit second input, so a model can be cut
between transformer layers and its top run again from a cached hidden state plus that mask.
Imported only by ``study.zoo.text.encoder`` inside its functions: importing this module imports Keras.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

MASKED = -1e9  # added to the attention scores of padding keys: exp() of it is exactly 0 in float32


@keras.saving.register_keras_serializable(package="transfer_study")
class BertEmbeddings(keras.layers.Layer):
    """Token ids -> LayerNorm(word + position + segment embedding); every token is segment 0 (one text per row)."""

    def __init__(
        self, vocab_size: int, max_positions: int, type_vocab_size: int, hidden: int, epsilon: float,
        dropout: float = 0.0, **kwargs: Any,
    ) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.vocab_size, self.max_positions, self.type_vocab_size = vocab_size, max_positions, type_vocab_size
        self.hidden, self.epsilon, self.dropout_rate = hidden, epsilon, dropout
        self.word_embeddings = keras.layers.Embedding(vocab_size, hidden, name="word_embeddings")
        self.position_embeddings = keras.layers.Embedding(max_positions, hidden, name="position_embeddings")
        self.token_type_embeddings = keras.layers.Embedding(type_vocab_size, hidden, name="token_type_embeddings")
        self.layer_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="layer_norm")
        self.dropout = keras.layers.Dropout(dropout)

    def build(self, input_shape: Any) -> None:
        self.word_embeddings.build(input_shape)
        self.position_embeddings.build((None,))
        self.token_type_embeddings.build((None,))
        self.layer_norm.build((None, None, self.hidden))
        self.built = True

    def call(self, token_ids: Any, training: bool | None = None) -> Any:
        length = ops.shape(token_ids)[1]
        x = self.word_embeddings(token_ids)
        x = x + ops.expand_dims(self.position_embeddings(ops.arange(length)), 0)
        x = x + self.token_type_embeddings.embeddings[0]
        return self.dropout(self.layer_norm(x), training=training)

    def compute_output_shape(self, input_shape: Any) -> tuple:
        return (*input_shape, self.hidden)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(), "vocab_size": self.vocab_size, "max_positions": self.max_positions,
            "type_vocab_size": self.type_vocab_size, "hidden": self.hidden, "epsilon": self.epsilon,
            "dropout": self.dropout_rate,
        }  # fmt: skip


@keras.saving.register_keras_serializable(package="transfer_study")
class BertLayer(keras.layers.Layer):
    """One post-norm transformer layer: multi-head self-attention over real tokens, then the GELU feed-forward."""

    def __init__(
        self, hidden: int, heads: int, intermediate: int, epsilon: float, dropout: float = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of the {heads} heads")
        self.hidden, self.heads, self.intermediate_size = hidden, heads, intermediate
        self.epsilon, self.dropout_rate = epsilon, dropout
        self.head_dim = hidden // heads
        self.query = keras.layers.Dense(hidden, name="query")
        self.key = keras.layers.Dense(hidden, name="key")
        self.value = keras.layers.Dense(hidden, name="value")
        self.attention_output = keras.layers.Dense(hidden, name="attention_output")
        self.attention_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="attention_norm")
        self.intermediate = keras.layers.Dense(intermediate, name="intermediate")
        self.output_dense = keras.layers.Dense(hidden, name="output_dense")
        self.output_norm = keras.layers.LayerNormalization(epsilon=epsilon, name="output_norm")
        self.dropout = keras.layers.Dropout(dropout)

    def build(self, hidden_shape: Any, padding_mask_shape: Any = None) -> None:
        shape = (None, None, self.hidden)
        for dense in (self.query, self.key, self.value, self.attention_output, self.intermediate):
            dense.build(shape)
        self.output_dense.build((None, None, self.intermediate_size))
        self.attention_norm.build(shape)
        self.output_norm.build(shape)
        self.built = True

    def _split_heads(self, x: Any) -> Any:
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        return ops.transpose(ops.reshape(x, (batch, length, self.heads, self.head_dim)), (0, 2, 1, 3))

    def call(self, hidden: Any, padding_mask: Any, training: bool | None = None) -> Any:
        batch, length = ops.shape(hidden)[0], ops.shape(hidden)[1]
        q = self._split_heads(self.query(hidden))
        k = self._split_heads(self.key(hidden))
        v = self._split_heads(self.value(hidden))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(self.head_dim)
        keep = ops.cast(padding_mask, scores.dtype)[:, None, None, :]
        probs = ops.softmax(scores + (1.0 - keep) * MASKED, axis=-1)
        context = ops.matmul(self.dropout(probs, training=training), v)
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, length, self.hidden))
        attended = self.attention_norm(hidden + self.dropout(self.attention_output(context), training=training))
        inner = keras.activations.gelu(self.intermediate(attended), approximate=False)
        return self.output_norm(attended + self.dropout(self.output_dense(inner), training=training))

    def compute_output_shape(self, hidden_shape: Any, padding_mask_shape: Any = None) -> Any:
        return hidden_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(), "hidden": self.hidden, "heads": self.heads,
            "intermediate": self.intermediate_size, "epsilon": self.epsilon, "dropout": self.dropout_rate,
        }  # fmt: skip


@keras.saving.register_keras_serializable(package="transfer_study")
class MeanPool(keras.layers.Layer):
    """Mean of the token vectors over real tokens only (sentence-transformers' ``pooling_mode_mean_tokens``)."""

    def call(self, hidden: Any, padding_mask: Any) -> Any:
        keep = ops.expand_dims(ops.cast(padding_mask, hidden.dtype), -1)
        return ops.sum(hidden * keep, axis=1) / ops.maximum(ops.sum(keep, axis=1), 1e-9)

    def compute_output_shape(self, hidden_shape: Any, padding_mask_shape: Any = None) -> Any:
        return (hidden_shape[0], hidden_shape[-1])


@keras.saving.register_keras_serializable(package="transfer_study")
class L2Normalize(keras.layers.Layer):
    """``x / max(||x||, 1e-12)``, as ``torch.nn.functional.normalize`` in sentence-transformers' Normalize module."""

    def call(self, x: Any) -> Any:
        return x / ops.maximum(ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True)), 1e-12)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape
