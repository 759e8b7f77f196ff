"""Modular addition (paper section 3.1 and appendix D, Table 6; Nanda et al., 2023).

A one-layer transformer reads ``a b =`` and predicts ``(a + b) mod p`` for p = 113.
A random 30% of the p**2 problems (3831) is the training set, the rest the
evaluation set; as in the paper authors' code, the split is drawn per seed
(``data_depends_on_seed``). Defaults replicate Table 6: no layer norm, 4 heads of
size 32, width 128, MLP 512, AdamW with lr 1e-3 and weight decay 1.0, batch 2048
(about half the training set per step, so one epoch is ~1.9 steps).

Variant ``stabilized`` (section 3.3, Figure 5): layer norm added back (pre-attention,
pre-MLP and before the unembedding) and batch size 256.

Variant ``reduced`` (not in the paper; for CPU-only demos): p = 23, a 70% train
split (370 problems, trained full batch), width 64 (4 heads of 16, MLP 256), AdamW
lr 3e-3, wd 1.0, 1200 steps, a checkpoint every 10. On a shared 2-core CPU, seeds
0-7 memorised the training set by step 60 and crossed 0.9 evaluation accuracy
between steps 320 and 820 (about a minute per seed trained alone).

Weight statistics: per block, each head's W_Q, W_K, W_V (d_head x d_model) and its
slice of W_O (d_model x d_head) are separate matrices, plus W_in and W_out of the MLP;
biases are the MLP's. Embeddings, layer norms and the unembedding are excluded
(:func:`tasks.models.transformer.transformer_blocks_selection`).
"""

from __future__ import annotations

from torch import nn

from .base import Task, TaskData
from .catalog import BUILTIN_SPECS
from .datasets.modular import modular_addition_split
from .loop import derive_seed
from .models.transformer import ModularTransformer, transformer_blocks_selection
from .stats import ParameterSelection


class ModularAdditionTask(Task, spec=BUILTIN_SPECS["modular_addition"]):
    """The ``modular_addition`` task; its metadata and hyperparameters are in :mod:`tasks.catalog`."""

    def build_data(self, seed: int) -> TaskData:
        c = self.config
        return TaskData(*modular_addition_split(int(c["p"]), float(c["train_fraction"]), derive_seed(seed, "data")))

    def build_model(self) -> nn.Module:
        c = self.config
        return ModularTransformer(
            int(c["p"]),
            d_model=int(c["d_model"]),
            n_heads=int(c["n_heads"]),
            d_head=int(c["d_head"]),
            d_mlp=int(c["d_mlp"]),
            n_layers=int(c["n_layers"]),
            layer_norm=bool(c["layer_norm"]),
        )

    def parameter_selection(self, model: nn.Module) -> ParameterSelection:
        return transformer_blocks_selection(model)
