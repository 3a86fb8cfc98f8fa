"""The encoder's own WordPiece tokenizer, read from the ``tokenizer.json`` its package ships, with our padding rules.

The Hugging Face ``tokenizers`` library runs the file exactly (BERT normaliser: clean text, lower case, Chinese
characters split, accents kept; BERT pre-tokeniser; WordPiece; ``[CLS] text [SEP]``), so ids are those of the
reference. all-MiniLM-L6-v2's file has padding *and* truncation at 128 built in; both are replaced here:

- truncation at ``max_length`` (default 256, sentence-transformers' ``max_seq_length`` for this model): a longer
  text keeps its first ``max_length - 2`` word pieces between ``[CLS]`` and ``[SEP]``, as the library truncates;
- padding to the longest text of each batch (``pad_to`` forces a fixed length instead, for comparison only).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from study.errors import StudyError

TEXT_EXTRA = "pip install 'transfer-study[text]'"


def require(module: str, package: str | None = None) -> Any:
    """Import an optional dependency of the text encoders, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = package or module
        raise StudyError(
            f"text encoders need the Python package {package!r}, which is not installed: {TEXT_EXTRA} "
            f"(or pip install {package})"
        ) from None


@dataclass(frozen=True)
class TokenBatch:
    """Token ids and padding mask (1 = real token) of a batch, both int32 ``(texts, length)``."""

    token_ids: np.ndarray
    padding_mask: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return self.padding_mask.sum(axis=1)

    def inputs(self) -> dict[str, np.ndarray]:
        """The encoder's named inputs."""
        return {"token_ids": self.token_ids, "padding_mask": self.padding_mask}


class TextTokenizer:
    """A shipped ``tokenizer.json`` with its own padding/truncation switched off and ours applied."""

    def __init__(self, path: Path, max_length: int = 256, max_positions: int = 512) -> None:
        if not isinstance(max_length, int) or not 2 <= max_length <= max_positions:
            raise StudyError(
                f"max_length={max_length!r} is out of range: choose 2..{max_positions} tokens (the encoder's "
                "position table)"
            )
        tokenizers = require("tokenizers")
        self.path = Path(path)
        self.max_length = max_length
        self._tok = tokenizers.Tokenizer.from_file(str(self.path))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length)
        pad = self._tok.token_to_id("[PAD]")
        self.pad_id = 0 if pad is None else int(pad)

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, ``[CLS] ... [SEP]``, truncated to ``max_length``, unpadded."""
        texts = _check_texts(texts)
        return [enc.ids for enc in self._tok.encode_batch(texts)] if texts else []

    def pad(self, ids: Sequence[Sequence[int]], pad_to: int | None = None) -> TokenBatch:
        """Pad id lists to the longest of them (or to ``pad_to``) on the right."""
        longest = max((len(row) for row in ids), default=0)
        length = longest if pad_to is None else pad_to
        if length < longest:
            raise StudyError(f"pad_to={pad_to} is shorter than the longest text ({longest} tokens)")
        token_ids = np.full((len(ids), length), self.pad_id, dtype="int32")
        mask = np.zeros((len(ids), length), dtype="int32")
        for i, row in enumerate(ids):
            token_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return TokenBatch(token_ids, mask)

    def __call__(self, texts: Sequence[str], pad_to: int | None = None) -> TokenBatch:
        """Tokenise and pad one batch (dynamic padding: to the batch's longest text unless ``pad_to``)."""
        return self.pad(self.ids(texts), pad_to)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise StudyError("texts must be a list of strings, not one string: wrap it as [text]")
    texts = list(texts)
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise StudyError(f"text {bad} is a {type(texts[bad]).__name__}, not a string: pass texts as str")
    return texts
