"""The task interface every built-in training task implements.

A *task* describes one training setting of the paper (appendix D): its data, its
model, its optimiser and its loss. The shared training loop (:mod:`tasks.loop`),
the seed ensembles (:mod:`tasks.ensemble`) and ``collect`` (:mod:`tasks.collect`)
do everything else: seeding, batching, evaluation, weight statistics, checkpoints,
persistence and resumption.

How to add a task
-----------------
1. Subclass :class:`Task` in a new module ``tasks/<name>.py`` and set the class
   attributes:

   - ``name`` (the CLI name) and ``description`` (one line for ``tasks`` listings);
   - ``default_config``: the paper's hyperparameters (appendix D) and the loop
     settings; it must contain the keys of :data:`LOOP_CONFIG_KEYS`
     (``steps``, ``eval_every``, ``batch_size``, ``optimizer``, ``lr``,
     ``weight_decay``) plus any key the task itself reads;
   - ``variants``: variant name -> overrides of ``default_config``; the
     ``"default"`` variant (no overrides) always exists and is added for you;
   - ``smoke_config``: overrides that make a run take about a second (tiny data,
     tiny model, few steps) for the tests and ``--size smoke``;
   - ``threshold``: the eval-accuracy threshold that counts as converged, or None;
   - optionally ``data_depends_on_seed`` (True when each seed draws its own data
     set, as in sparse parities) and ``vmappable`` (False when the model cannot be
     trained with ``torch.func.vmap``, e.g. batch norm in train mode; the loop
     also detects this itself and falls back to sequential training), and
     ``runtime_keys`` (config keys such as a data directory that do not change
     results, so resuming a collection does not compare them).

2. Implement :meth:`Task.build_data` (tensors from a seed; called once when
   ``data_depends_on_seed`` is False) and :meth:`Task.build_model` (an
   ``nn.Module``; the loop calls it under a seeded global RNG, so plain
   ``nn.Linear(...)`` initialisation is reproducible per seed).

3. Override when the defaults do not fit:

   - :meth:`Task.metrics` (default: summed cross-entropy and argmax accuracy over
     the last dimension; targets equal to -100 are ignored);
   - :meth:`Task.transform_batch` (augmentation or masking of a training batch,
     and preprocessing of any batch, drawing randomness only from the given
     generator);
   - :meth:`Task.parameter_selection` (which tensors count as weight matrices and
     biases for the 14 statistics; the default rule is
     :func:`tasks.stats.default_parameter_selection`: weights of Linear/Conv layers
     are matrices, conv kernels reshaped to ``(out, in*kh*kw)``, their 1-D biases
     are biases, embeddings and normalisation layers are excluded; attention
     projections are split per head with :class:`tasks.stats.SelectedParameter`'s
     ``row_blocks`` / ``col_blocks``);
   - :meth:`Task.optimizer` (default: :class:`OptimizerSpec` from the config keys
     ``optimizer``, ``lr``, ``weight_decay``, ``momentum``, ``betas``, ``eps``).

4. Register it: a built-in task moves its metadata (step 1's attributes) into one
   :class:`~tasks.catalog.TaskSpec` in ``tasks/catalog.py``, with ``implementation``
   naming the class, and declares ``class MyTask(Task, spec=BUILTIN_SPECS["my_task"])``
   (so ``tasks`` lists it without importing torch); a user's task calls
   :func:`tasks.registry.register_task` at run time.

Methods must be deterministic functions of their arguments and of ``self.config``:
the loop relies on that for per-seed reproducibility and for resumable collections.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from bayes_trainmap.core.errors import TaskError

from .catalog import LOOP_CONFIG_KEYS, SIZES, TaskSpec
from .stats import ParameterSelection, default_parameter_selection

__all__ = ["IGNORE_INDEX", "LOOP_CONFIG_KEYS", "SIZES", "OptimizerSpec", "Task", "TaskData"]

#: Target value ignored by the default :meth:`Task.metrics` (as in ``F.cross_entropy``).
IGNORE_INDEX = -100

@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """A declarative optimiser, so the ensemble path can run it on stacked tensors.

    Attributes
    ----------
    name : {"sgd", "adamw", "adam"}
        ``"sgd"`` uses coupled L2 weight decay (``torch.optim.SGD``); ``"adamw"``
        decoupled weight decay (``torch.optim.AdamW``); ``"adam"`` coupled
        (``torch.optim.Adam``).
    lr, weight_decay, momentum, betas, eps : float
        As in the corresponding ``torch.optim`` class (momentum only for SGD).
    """

    name: str
    lr: float
    weight_decay: float = 0.0
    momentum: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.name not in ("sgd", "adamw", "adam"):
            raise TaskError(f"optimizer {self.name!r} is not supported; expected 'sgd', 'adamw' or 'adam'")
        if not self.lr > 0:
            raise TaskError(f"learning rate must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise TaskError(f"weight_decay must be >= 0, got {self.weight_decay!r}")

    def build(self, params) -> torch.optim.Optimizer:
        """The equivalent ``torch.optim`` optimiser (single-threaded, non-foreach kernels)."""
        if self.name == "sgd":
            return torch.optim.SGD(
                params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay, foreach=False
            )
        cls = torch.optim.AdamW if self.name == "adamw" else torch.optim.Adam
        return cls(
            params, lr=self.lr, betas=tuple(self.betas), eps=self.eps, weight_decay=self.weight_decay, foreach=False
        )


@dataclasses.dataclass
class TaskData:
    """In-memory tensors of one task's data set.

    Attributes
    ----------
    train_inputs : Tensor, shape (n_train, ...)
    train_targets : Tensor, shape (n_train, ...)
    eval_inputs : Tensor, shape (n_eval, ...)
    eval_targets : Tensor, shape (n_eval, ...)
    """

    train_inputs: torch.Tensor
    train_targets: torch.Tensor
    eval_inputs: torch.Tensor
    eval_targets: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.train_inputs) != len(self.train_targets) or len(self.train_inputs) == 0:
            raise TaskError(
                f"train inputs and targets must be non-empty and of equal length, got "
                f"{len(self.train_inputs)} and {len(self.train_targets)}"
            )
        if len(self.eval_inputs) != len(self.eval_targets) or len(self.eval_inputs) == 0:
            raise TaskError(
                f"eval inputs and targets must be non-empty and of equal length, got "
                f"{len(self.eval_inputs)} and {len(self.eval_targets)}"
            )

    @property
    def n_train(self) -> int:
        return len(self.train_inputs)

    def to(self, device: torch.device | str) -> "TaskData":
        return TaskData(*(t.to(device) for t in dataclasses.astuple(self)))


class Task:
    """Base class of a training task; see the module docstring for how to add one.

    Parameters
    ----------
    variant : str
        One of ``type(self).variants`` (``"default"`` always exists).
    size : {"default", "smoke"}
        ``"smoke"`` applies ``smoke_config`` on top of the variant.
    overrides : mapping, optional
        Last-applied config overrides (e.g. ``steps`` and ``eval_every`` from the CLI).
        Only keys already present in the resolved configuration are accepted.

    Attributes
    ----------
    config : dict
        The fully resolved configuration (JSON-serialisable); identifies a collection.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_config: ClassVar[Mapping[str, Any]] = {}
    variants: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    smoke_config: ClassVar[Mapping[str, Any]] = {}
    threshold: ClassVar[float | None] = None
    data_depends_on_seed: ClassVar[bool] = False
    vmappable: ClassVar[bool] = True
    #: Config keys that do not change results (data paths, download flags): stored with a
    #: collection but not compared when a collection is resumed.
    runtime_keys: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, spec: TaskSpec | None = None, **kwargs: Any) -> None:
        """``class MyTask(Task, spec=...)`` takes the metadata class attributes from a spec."""
        super().__init_subclass__(**kwargs)
        if spec is not None:
            cls.name, cls.description = spec.name, spec.description
            cls.default_config, cls.variants, cls.smoke_config = spec.default_config, spec.variants, spec.smoke_config
            cls.threshold, cls.data_depends_on_seed, cls.runtime_keys = (
                spec.threshold, spec.data_depends_on_seed, spec.runtime_keys)
            cls._spec = spec

    def __init__(self, variant: str = "default", size: str = "default", overrides: Mapping[str, Any] | None = None):
        spec = self.task_spec()
        self.config: dict[str, Any] = spec.resolve_config(variant, size, overrides)
        self.threshold = spec.threshold_for(self.config)
        self.variant = variant
        self.size = size

    @classmethod
    def task_spec(cls) -> TaskSpec:
        """The :class:`~tasks.catalog.TaskSpec` of this class (built from its class attributes)."""
        spec = cls.__dict__.get("_spec")
        if spec is not None:
            return spec
        return TaskSpec(
            name=cls.name, description=cls.description, default_config=cls.default_config,
            variants=cls.variants, smoke_config=cls.smoke_config, threshold=cls.threshold,
            data_depends_on_seed=cls.data_depends_on_seed, runtime_keys=cls.runtime_keys,
        )

    @classmethod
    def variant_names(cls) -> list[str]:
        """``"default"`` followed by the task's named variants."""
        return cls.task_spec().variant_names()

    # ---- what a task must supply -------------------------------------------------
    def build_data(self, seed: int) -> TaskData:
        """Construct the data set; must depend only on ``seed`` and ``self.config``.

        When ``data_depends_on_seed`` is False the loop calls this once with seed 0.
        """
        raise TaskError(f"task {self.name!r} does not define build_data")

    def build_model(self) -> nn.Module:
        """Construct a freshly initialised model (the caller seeds the global RNG)."""
        raise TaskError(f"task {self.name!r} does not define build_model")

    # ---- overridable defaults -----------------------------------------------------
    def optimizer(self) -> OptimizerSpec:
        """The optimiser from the config (``optimizer``, ``lr``, ``weight_decay``, ...)."""
        c = self.config
        return OptimizerSpec(
            name=str(c["optimizer"]).lower(),
            lr=float(c["lr"]),
            weight_decay=float(c["weight_decay"]),
            momentum=float(c.get("momentum", 0.0)),
            betas=tuple(c.get("betas", (0.9, 0.999))),
            eps=float(c.get("eps", 1e-8)),
        )

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed loss, number correct and number of counted targets of one batch.

        Must be traceable by ``torch.func.vmap`` (no data-dependent shapes).

        Parameters
        ----------
        outputs : Tensor, shape (B, ..., C)
            Logits over C classes in the last dimension.
        targets : Tensor, shape (B, ...)
            Class indices; ``IGNORE_INDEX`` entries are not counted.

        Returns
        -------
        loss_sum, n_correct, n_counted : 0-d Tensors
            The training objective is ``loss_sum / n_counted``.
        """
        logits = outputs.reshape(-1, outputs.shape[-1])
        flat = targets.reshape(-1)
        loss_sum = nn.functional.cross_entropy(logits, flat, ignore_index=IGNORE_INDEX, reduction="sum")
        counted = flat != IGNORE_INDEX
        correct = ((logits.argmax(-1) == flat) & counted).sum()
        return loss_sum, correct.to(logits.dtype), counted.sum().to(logits.dtype)

    def transform_batch(
        self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment/mask a batch. ``generator`` is None for evaluation batches.

        Training batches get a per-seed CPU generator; draw all randomness from it.
        """
        return inputs, targets

    def parameter_selection(self, model: nn.Module) -> ParameterSelection:
        """Which parameters count as weight matrices and biases for the statistics."""
        return default_parameter_selection(model)

    # ---- conveniences ----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-serialisable identity of this configured task (stored with trajectories)."""
        return {"task": self.name, "variant": self.variant, "size": self.size, "config": copy.deepcopy(self.config)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(variant={self.variant!r}, size={self.size!r})"
