"""Modular addition data: every pair ``(a, b)`` with ``0 <= a, b < p``, as in Nanda et al. (2023)."""

from __future__ import annotations

import torch

from bayes_trainmap.core.errors import TaskError


def modular_addition_pairs(p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``p**2`` problems ``a b =`` and their answers.

    Parameters
    ----------
    p : int
        The modulus (>= 2); the ``=`` token is ``p``.

    Returns
    -------
    inputs : LongTensor, shape (p**2, 3)
        Rows ``(a, b, p)`` in lexicographic order of ``(a, b)``.
    targets : LongTensor, shape (p**2,)
        ``(a + b) mod p``.
    """
    if not isinstance(p, int) or p < 2:
        raise TaskError(f"modulus p must be an integer >= 2, got {p!r}")
    a, b = torch.cartesian_prod(torch.arange(p), torch.arange(p)).unbind(1)
    inputs = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    return inputs, (a + b) % p


def modular_addition_split(
    p: int, train_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random train/eval split of all problems, drawn from ``seed``.

    The training set has ``round(train_fraction * p**2)`` problems (3831 for
    p = 113 and 30%, as in the paper's Table 6); the rest is the evaluation set.

    Returns
    -------
    train_inputs (n_train, 3), train_targets (n_train,), eval_inputs (n_eval, 3), eval_targets (n_eval,)
    """
    if not 0.0 < train_fraction < 1.0:
        raise TaskError(f"train_fraction must lie in (0, 1), got {train_fraction!r}")
    inputs, targets = modular_addition_pairs(p)
    n_train = round(train_fraction * len(inputs))
    if not 0 < n_train < len(inputs):
        raise TaskError(f"train_fraction {train_fraction} leaves an empty split of the {len(inputs)} problems")
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(int(seed)))
    train, held_out = order[:n_train], order[n_train:]
    return inputs[train], targets[train], inputs[held_out], targets[held_out]
