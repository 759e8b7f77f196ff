"""Sparse parities (paper appendix D, Table 5; Barak et al., 2022).

Inputs are uniform random bit strings of length ``n_bits`` = 40 encoded as +-1; the
label is the parity (XOR) of ``k`` = 3 fixed bits, whose positions are drawn from the
seed's data generator. The paper's main text calls the operation "AND", but Table 5
replicates Barak et al., whose task is the *parity* of k bits; we use parity. 1000
training and 100 test examples are drawn per seed (``data_depends_on_seed``), so seeds
differ in initialisation, data order and data set.

The model is an MLP with one hidden layer of 128 ReLU units and two output logits,
trained with cross-entropy (Barak et al. use a hinge loss on one output; cross-entropy
keeps every built-in task on the same loss) by SGD, lr 0.1, weight decay 0.01, batch 32.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Task, TaskData
from .catalog import BUILTIN_SPECS
from .loop import derive_seed


def make_sparse_parity(n_examples: int, n_bits: int, relevant: torch.Tensor, generator: torch.Generator):
    """``(x, y)``: x of shape (n_examples, n_bits) in {-1, +1} float32; y (n_examples,) int64 parity."""
    bits = torch.randint(0, 2, (n_examples, n_bits), generator=generator)
    y = bits[:, relevant].sum(dim=1) % 2
    return (1 - 2 * bits).float(), y.long()


class SparseParitiesTask(Task, spec=BUILTIN_SPECS["sparse_parities"]):
    """The ``sparse_parities`` task; its metadata and hyperparameters are in :mod:`tasks.catalog`."""

    def build_data(self, seed: int) -> TaskData:
        c = self.config
        if not 0 < c["k"] <= c["n_bits"]:
            raise ValueError(f"k must be in 1..n_bits={c['n_bits']}, got {c['k']}")
        generator = torch.Generator().manual_seed(derive_seed(seed, "data"))
        relevant = torch.randperm(c["n_bits"], generator=generator)[: c["k"]]
        x_train, y_train = make_sparse_parity(c["n_train"], c["n_bits"], relevant, generator)
        x_eval, y_eval = make_sparse_parity(c["n_eval"], c["n_bits"], relevant, generator)
        return TaskData(x_train, y_train, x_eval, y_eval)

    def build_model(self) -> nn.Module:
        c = self.config
        return nn.Sequential(nn.Linear(c["n_bits"], c["hidden"]), nn.ReLU(), nn.Linear(c["hidden"], 2))
