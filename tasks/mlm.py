"""Masked language modelling with a small BERT trained from scratch (paper appendix E).

The paper analyses the five released MultiBERTs runs (use
:func:`tasks.hf_checkpoints.trajectory_from_hf_checkpoints` for those). This task
trains a small BERT-style model (2 layers, width 64, 2 heads, MLP 256, post-LN,
GELU, no dropout) with the shared loop on an offline corpus -- the docstrings of a
fixed list of standard-library modules (:mod:`tasks.datasets.text`) -- with a
character tokenizer over printable ASCII. The corpus is cut into consecutive
sequences of ``seq_len`` characters; every ``eval_every_nth`` sequence is held out.

Training batches are masked BERT-style (15% of positions: 80% ``[MASK]``, 10% a
random character, 10% unchanged) from the run's transform generator; evaluation
batches are masked with a fixed generator (``eval_mask_seed``), so every checkpoint
is scored on the same masked positions. ``eval_accuracy`` is the masked-token
accuracy. The corpus fingerprint is part of the configuration, so a collection
directory refuses to mix corpora from different Python versions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bayes_trainmap.core.errors import TaskError

from .base import Task, TaskData
from .catalog import BUILTIN_SPECS
from .datasets.text import (
    CharTokenizer,
    chunk_sequences,
    corpus_fingerprint,
    mask_tokens,
    stdlib_docstring_corpus,
)
from .models.bert import MaskedLanguageModel
from .models.transformer import transformer_blocks_selection
from .stats import ParameterSelection


class MLMTask(Task, spec=BUILTIN_SPECS["mlm"]):
    """The ``mlm`` task; its metadata and hyperparameters are in :mod:`tasks.catalog`."""

    def __init__(self, variant: str = "default", size: str = "default", overrides: dict[str, Any] | None = None):
        super().__init__(variant, size, overrides)
        self.tokenizer = CharTokenizer()
        text = self._corpus_text()
        fingerprint = corpus_fingerprint(text)
        expected = self.config["corpus_fingerprint"]
        if expected is not None and expected != fingerprint:
            raise TaskError(
                f"mlm corpus fingerprint is {fingerprint}, but the configuration expects {expected} "
                "(the standard library's docstrings differ in this Python)"
            )
        self.config["corpus_fingerprint"] = fingerprint
        self._text = text

    def _corpus_text(self) -> str:
        text = stdlib_docstring_corpus(tuple(self.config["corpus_modules"]))
        max_chars = self.config["max_chars"]
        return text if max_chars is None else text[: int(max_chars)]

    def build_data(self, seed: int) -> TaskData:
        c = self.config
        sequences = chunk_sequences(self.tokenizer.encode(self._text), int(c["seq_len"]))
        nth = int(c["eval_every_nth"])
        if nth < 2 or len(sequences) < nth:
            raise TaskError(f"need eval_every_nth >= 2 and at least that many sequences, got {nth} and {len(sequences)}")
        held_out = torch.arange(len(sequences)) % nth == nth - 1
        train, evaluation = sequences[~held_out], sequences[held_out]
        # Targets are the clean tokens; transform_batch masks them into (inputs, targets).
        return TaskData(train, train.clone(), evaluation, evaluation.clone())

    def build_model(self) -> nn.Module:
        c = self.config
        return MaskedLanguageModel(
            self.tokenizer.vocab_size,
            int(c["seq_len"]),
            d_model=int(c["d_model"]),
            n_layers=int(c["n_layers"]),
            n_heads=int(c["n_heads"]),
            d_mlp=int(c["d_mlp"]),
        )

    def transform_batch(
        self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask clean token sequences (B, L) into corrupted inputs and masked-position targets."""
        if generator is None:
            generator = torch.Generator().manual_seed(int(self.config["eval_mask_seed"]))
        return mask_tokens(
            targets, generator, mask_prob=float(self.config["mask_prob"]), vocab_size=self.tokenizer.vocab_size
        )

    def parameter_selection(self, model: nn.Module) -> ParameterSelection:
        return transformer_blocks_selection(model)
