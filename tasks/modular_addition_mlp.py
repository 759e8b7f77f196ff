"""Modular addition with an MLP on one-hot inputs (not in the paper; a CPU-sized grokking task).

The problems are those of :mod:`tasks.modular_addition` (every pair ``(a, b)``,
``0 <= a, b < p``, answer ``(a + b) mod p``; a random ``train_fraction`` of the p**2
problems is the training set, drawn per seed, the rest the evaluation set), but the
input is the concatenation of the one-hot codes of ``a`` and ``b`` (2p features) and
the model is an MLP ``2p -> hidden -> p`` with ReLU (Gromov, 2023, "Grokking modular
arithmetic", and Liu et al., 2022, "Omnigrok", show such networks grok under weight
decay). A plain MLP is trained by the stacked-MLP ensemble path
(:mod:`tasks.stacked_mlp`), many times faster on a CPU than the transformer.

Defaults (issue 17's detour search, docs/reproduction.md, "Searching for a CPU-feasible
detour"): p = 47, a 50% training split (1104 of 2209 problems), hidden width 256,
AdamW lr 5e-3, weight decay 1.0, full batch, 4000 steps with a checkpoint every 20.
Seeds 0-7 memorised the training set by step 100 and crossed 0.9 evaluation accuracy
at steps 2500-3000 (checked every 100 steps); with a 40% split and lr 1e-3 none had
generalised after 3000 steps, with lr 5e-3 none after 4000.

Weight statistics: both linear layers' weights are matrices, their biases biases (the
default selection, :func:`tasks.stats.default_parameter_selection`).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Task, TaskData
from .catalog import BUILTIN_SPECS
from .datasets.modular import modular_addition_split
from .loop import derive_seed


def one_hot_pairs(tokens: torch.Tensor, p: int) -> torch.Tensor:
    """Concatenated one-hot codes of the two operands.

    Parameters
    ----------
    tokens : LongTensor, shape (n, 3)
        Rows ``(a, b, =)`` as returned by :func:`tasks.datasets.modular.modular_addition_split`.
    p : int
        The modulus.

    Returns
    -------
    Tensor, shape (n, 2p), float32
        ``[one_hot(a), one_hot(b)]``.
    """
    a = nn.functional.one_hot(tokens[:, 0], p)
    b = nn.functional.one_hot(tokens[:, 1], p)
    return torch.cat([a, b], dim=1).float()


class ModularAdditionMLPTask(Task, spec=BUILTIN_SPECS["modular_addition_mlp"]):
    """The ``modular_addition_mlp`` task; its metadata and hyperparameters are in :mod:`tasks.catalog`."""

    def build_data(self, seed: int) -> TaskData:
        c = self.config
        p = int(c["p"])
        x_train, y_train, x_eval, y_eval = modular_addition_split(p, float(c["train_fraction"]), derive_seed(seed, "data"))
        return TaskData(one_hot_pairs(x_train, p), y_train, one_hot_pairs(x_eval, p), y_eval)

    def build_model(self) -> nn.Module:
        c = self.config
        p, hidden = int(c["p"]), int(c["hidden"])
        return nn.Sequential(nn.Linear(2 * p, hidden), nn.ReLU(), nn.Linear(hidden, p))
