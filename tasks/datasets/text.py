"""An offline text corpus, a character tokenizer and BERT masking for the ``mlm`` task.

The corpus is the docstrings of a fixed list of Python standard-library modules,
gathered in a fixed order (module docstring, then the public classes and
functions of the module in sorted order, then the public methods of each class),
duplicates dropped and whitespace collapsed. It needs no download, but it follows
the installed Python: :func:`corpus_fingerprint` identifies it, and the ``mlm``
task records the fingerprint in its configuration so that a collection never
mixes two corpora.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import warnings

import torch

from bayes_trainmap.core.errors import TaskError

from ..catalog import DEFAULT_CORPUS_MODULES

__all__ = ["DEFAULT_CORPUS_MODULES", "CharTokenizer", "chunk_sequences", "corpus_fingerprint", "mask_tokens", "stdlib_docstring_corpus"]


def _public_docs(module) -> list[str]:
    docs = [inspect.getdoc(module)]
    for name in sorted(dir(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name, None)
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        docs.append(inspect.getdoc(obj))
        if inspect.isclass(obj):
            for member_name in sorted(vars(obj)):
                member = getattr(obj, member_name, None)
                if not member_name.startswith("_") and inspect.isroutine(member):
                    docs.append(inspect.getdoc(member))
    return [d for d in docs if d]


def stdlib_docstring_corpus(modules: tuple[str, ...] = DEFAULT_CORPUS_MODULES) -> str:
    """The docstrings of ``modules`` as one string of printable ASCII.

    Parameters
    ----------
    modules : tuple of str
        Importable standard-library module names, read in this order.

    Returns
    -------
    str
        Docstrings joined by single spaces; runs of whitespace collapsed to one
        space; characters outside printable ASCII replaced by ``?``.
    """
    seen: set[str] = set()
    parts: list[str] = []
    for name in modules:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = importlib.import_module(name)
                docs = _public_docs(module)
        except ImportError as exc:
            raise TaskError(f"corpus module {name!r} cannot be imported: {exc}") from exc
        for doc in docs:
            if doc not in seen:
                seen.add(doc)
                parts.append(doc)
    text = re.sub(r"\s+", " ", " ".join(parts)).strip()
    return re.sub(r"[^ -~]", "?", text)


def corpus_fingerprint(text: str) -> str:
    """First 16 hex digits of the SHA-256 of the corpus (identifies it in configs)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class CharTokenizer:
    """Character tokenizer over printable ASCII with BERT's special tokens.

    Ids: ``0`` ``[PAD]``, ``1`` ``[MASK]``, ``2`` ``[UNK]``, then the 95 printable
    ASCII characters ``' '`` .. ``'~'`` in code-point order. The vocabulary does
    not depend on the corpus, so models and data from different corpora agree.
    """

    PAD, MASK, UNK = 0, 1, 2
    N_SPECIAL = 3
    CHARACTERS = "".join(chr(c) for c in range(32, 127))

    def __init__(self) -> None:
        self._ids = {ch: i + self.N_SPECIAL for i, ch in enumerate(self.CHARACTERS)}

    @property
    def vocab_size(self) -> int:
        return self.N_SPECIAL + len(self.CHARACTERS)

    def encode(self, text: str) -> torch.Tensor:
        """str of length n -> int64 Tensor (n,); unknown characters map to ``[UNK]``."""
        return torch.tensor([self._ids.get(ch, self.UNK) for ch in text], dtype=torch.int64)

    def decode(self, ids: torch.Tensor) -> str:
        """Inverse of :meth:`encode`; special tokens render as ``[PAD]``, ``[MASK]``, ``[UNK]``."""
        names = {self.PAD: "[PAD]", self.MASK: "[MASK]", self.UNK: "[UNK]"}
        return "".join(
            names[i] if i < self.N_SPECIAL else self.CHARACTERS[i - self.N_SPECIAL] for i in ids.tolist()
        )


def chunk_sequences(ids: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Cut a token stream into consecutive non-overlapping sequences (remainder dropped).

    Parameters
    ----------
    ids : Tensor, shape (n,)
    seq_len : int

    Returns
    -------
    Tensor, shape (n // seq_len, seq_len)
    """
    if seq_len < 1:
        raise TaskError(f"seq_len must be >= 1, got {seq_len!r}")
    n = (len(ids) // seq_len) * seq_len
    if n == 0:
        raise TaskError(f"corpus of {len(ids)} tokens is shorter than one sequence of {seq_len}")
    return ids[:n].reshape(-1, seq_len)


def mask_tokens(
    tokens: torch.Tensor,
    generator: torch.Generator,
    *,
    mask_prob: float = 0.15,
    vocab_size: int,
    mask_id: int = CharTokenizer.MASK,
    n_special: int = CharTokenizer.N_SPECIAL,
    ignore_index: int = -100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: choose ``mask_prob`` of the positions as prediction targets;
    of those, 80% become ``[MASK]``, 10% a random non-special token, 10% stay.

    Parameters
    ----------
    tokens : int64 Tensor, shape (B, L)
    generator : torch.Generator
        CPU generator; the only source of randomness.
    mask_prob : float
    vocab_size, mask_id, n_special, ignore_index : int

    Returns
    -------
    inputs : Tensor, shape (B, L)
        Corrupted tokens.
    targets : Tensor, shape (B, L)
        The original token at chosen positions, ``ignore_index`` elsewhere.
    """
    shape = tokens.shape
    chosen = torch.rand(shape, generator=generator) < mask_prob
    action = torch.rand(shape, generator=generator)
    random_ids = torch.randint(n_special, vocab_size, shape, generator=generator)
    chosen, action, random_ids = (t.to(tokens.device) for t in (chosen, action, random_ids))
    inputs = torch.where(chosen & (action < 0.8), torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    targets = torch.where(chosen, tokens, torch.full_like(tokens, ignore_index))
    return inputs, targets
