"""Text encoders of the model zoo: BERT-shaped sentence encoders as data, their tokenizers and batched embedding.

``encoder`` (specs, weights conversion, model building, cut points) and ``tokenizer`` import no TensorFlow;
``layers`` (the Keras layers) is imported by ``encoder``'s functions when a model is built.
"""

from study.zoo.text.encoder import (
    MINILM_L6,
    TEXT_ENCODERS,
    TextEncoderSpec,
    build_text_encoder,
    build_top,
    converted_weights,
    embed,
    encode_from,
    get_text_encoder,
    hidden_model,
    list_text_encoders,
    load_tokenizer,
    register_text_encoder,
)
from study.zoo.text.tokenizer import TextTokenizer, TokenBatch

__all__ = [
    "MINILM_L6", "TEXT_ENCODERS", "TextEncoderSpec", "TextTokenizer", "TokenBatch", "build_text_encoder",
    "build_top", "converted_weights", "embed", "encode_from", "get_text_encoder", "hidden_model",
    "list_text_encoders", "load_tokenizer", "register_text_encoder",
]  # fmt: skip
