"""What each built-in task is, without its training code: the one table of task metadata.

A :class:`TaskSpec` holds a task's name, one-line description, hyperparameters
(``default_config``, ``variants``, ``smoke_config``), convergence threshold and the
``module:Class`` that implements it. This module imports neither torch nor any task
module, so ``python -m bayes_trainmap tasks`` lists every task instantly, and
:class:`tasks.base.Task` resolves a configuration with the same code
(:meth:`TaskSpec.resolve_config`) that the listing uses.

A built-in task class takes its metadata from here (``class SparseParitiesTask(Task,
spec=BUILTIN_SPECS["sparse_parities"])``); a user's task sets the same fields as class
attributes instead (see :mod:`tasks.base`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from bayes_trainmap.core.errors import TaskError

#: Config keys every task's resolved configuration must define (read by the loop).
LOOP_CONFIG_KEYS: tuple[str, ...] = ("steps", "eval_every", "batch_size", "optimizer", "lr", "weight_decay")

#: ``size`` values of a task: the paper's setting, or one that trains in about a second.
SIZES: tuple[str, ...] = ("default", "smoke")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A task's metadata and hyperparameters.

    Attributes
    ----------
    name : str
        The CLI name.
    description : str
        One line for ``tasks`` listings.
    default_config : mapping
        The paper's hyperparameters and the loop settings (:data:`LOOP_CONFIG_KEYS`).
    variants : mapping of str to mapping
        Variant name -> overrides of ``default_config``; ``"default"`` always exists.
    smoke_config : mapping
        Overrides for ``size="smoke"`` (tiny data and model, few steps).
    threshold : float or None
        Eval accuracy that counts as converged (None: no convergence outcome).
    threshold_rule : callable, optional
        ``config -> threshold`` when the threshold depends on the configuration
        (destabilised CIFAR-100: 0.4); overrides ``threshold``.
    implementation : str
        ``"module:Class"`` relative to the ``tasks`` package ("" for a user's task).
    """

    name: str
    description: str
    default_config: Mapping[str, Any]
    variants: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    smoke_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    threshold: float | None = None
    threshold_rule: Callable[[Mapping[str, Any]], float | None] | None = None
    data_depends_on_seed: bool = False
    runtime_keys: tuple[str, ...] = ()
    implementation: str = ""

    def variant_names(self) -> list[str]:
        """``"default"`` followed by the task's named variants."""
        return ["default"] + [v for v in self.variants if v != "default"]

    def resolve_config(
        self, variant: str = "default", size: str = "default", overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The full configuration of one variant and size, with ``overrides`` applied last.

        Raises
        ------
        TaskError
            An unknown variant, size or override key, a missing loop key, or a
            non-positive ``steps``/``eval_every``/``batch_size``.
        """
        variants = self.variant_names()
        if variant not in variants:
            raise TaskError(f"task {self.name!r} has no variant {variant!r}; expected one of {', '.join(variants)}")
        if size not in SIZES:
            raise TaskError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
        config = copy.deepcopy(dict(self.default_config))
        config.update(copy.deepcopy(dict(self.variants.get(variant, {}))))
        if size == "smoke":
            config.update(copy.deepcopy(dict(self.smoke_config)))
        unknown = sorted(set(overrides or {}) - set(config))
        if unknown:
            raise TaskError(
                f"unknown config keys for task {self.name!r}: {', '.join(unknown)}; "
                f"expected some of {', '.join(sorted(config))}"
            )
        config.update({k: v for k, v in (overrides or {}).items() if v is not None})
        missing = [k for k in LOOP_CONFIG_KEYS if k not in config]
        if missing:
            raise TaskError(f"task {self.name!r} config lacks required keys: {', '.join(missing)}")
        for key in ("steps", "eval_every", "batch_size"):
            value = config[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TaskError(f"{key} must be a positive integer, got {value!r}")
        return config

    def threshold_for(self, config: Mapping[str, Any]) -> float | None:
        """The convergence threshold of a resolved configuration."""
        return self.threshold_rule(config) if self.threshold_rule is not None else self.threshold

    def describe(self) -> dict[str, Any]:
        """One ``tasks`` listing row: description, variants, and per variant its threshold and config."""
        configs = {v: self.resolve_config(v) for v in self.variant_names()}
        return {
            "task": self.name,
            "description": self.description,
            "variants": self.variant_names(),
            "threshold": {v: self.threshold_for(c) for v, c in configs.items()},
            "config": configs,
        }


def _cifar100_threshold(config: Mapping[str, Any]) -> float:
    # Section 3.4: convergence thresholds 0.6 (stable) and 0.4 (destabilised).
    return 0.6 if config["batch_norm"] and config["residual"] else 0.4


#: Standard-library modules whose docstrings form the default ``mlm`` corpus (~250 KB of text).
DEFAULT_CORPUS_MODULES: tuple[str, ...] = (
    "builtins", "collections", "itertools", "functools", "json", "re", "string", "textwrap",
    "pathlib", "random", "statistics", "datetime", "argparse", "logging", "csv", "heapq",
    "bisect", "fractions", "decimal", "contextlib", "dataclasses", "enum", "abc", "operator",
    "shutil", "tempfile", "unittest",
)  # fmt: skip

_SPECS = (
    TaskSpec(
        name="sparse_parities",
        description="parity of k=3 of n=40 bits, one-hidden-layer MLP, SGD (Barak et al. 2022)",
        default_config={
            "n_bits": 40, "k": 3, "n_train": 1000, "n_eval": 100, "hidden": 128, "optimizer": "sgd",
            "lr": 0.1, "weight_decay": 0.01, "batch_size": 32, "steps": 20000, "eval_every": 100,
        },
        smoke_config={"n_bits": 12, "n_train": 200, "n_eval": 50, "hidden": 16, "steps": 60, "eval_every": 10},
        threshold=0.9,
        data_depends_on_seed=True,
        implementation=".sparse_parities:SparseParitiesTask",
    ),
    TaskSpec(
        name="mnist",
        description="MNIST, MLP 784-800-10, AdamW (Simard et al. 2003); reads torchvision's MNIST",
        default_config={
            "hidden": 800, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1.0, "batch_size": 256,
            "steps": 4690, "eval_every": 20, "train_eval_examples": 10000, "n_train": None, "n_eval": None,
            "data_root": "~/.cache/bayes_trainmap/data", "download": False,
        },
        smoke_config={"hidden": 32, "steps": 30, "eval_every": 10, "batch_size": 16},
        threshold=0.97,
        runtime_keys=("data_root", "download"),
        implementation=".image_mlp:MnistTask",
    ),
    TaskSpec(
        name="digits",
        description="scikit-learn 8x8 digits (offline), MLP 64-64-10, AdamW",
        default_config={
            "hidden": 64, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1.0, "batch_size": 64,
            "eval_fraction": 0.2, "split_seed": 0, "steps": 3000, "eval_every": 10,
        },
        smoke_config={"hidden": 16, "steps": 40, "eval_every": 10},
        threshold=0.95,
        implementation=".image_mlp:DigitsTask",
    ),
    TaskSpec(
        name="modular_addition",
        description="(a + b) mod 113 with a one-layer transformer, AdamW, wd 1.0 (Nanda et al. 2023)",
        default_config={
            "p": 113, "train_fraction": 0.3, "d_model": 128, "n_heads": 4, "d_head": 32, "d_mlp": 512,
            "n_layers": 1, "layer_norm": False, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1.0,
            "betas": [0.9, 0.999], "batch_size": 2048, "steps": 20000, "eval_every": 50,
        },
        variants={
            "stabilized": {"layer_norm": True, "batch_size": 256},
            # Not in the paper: a CPU-sized setting that still groks (see tasks/modular_addition.py).
            "reduced": {
                "p": 23, "train_fraction": 0.7, "d_model": 64, "d_head": 16, "d_mlp": 256, "lr": 3e-3,
                "batch_size": 370, "steps": 1200, "eval_every": 10,
            },
        },
        smoke_config={
            "p": 11, "train_fraction": 0.5, "d_model": 16, "n_heads": 2, "d_head": 8, "d_mlp": 32,
            "batch_size": 32, "steps": 40, "eval_every": 10,
        },
        threshold=0.9,
        data_depends_on_seed=True,
        implementation=".modular_addition:ModularAdditionTask",
    ),
    TaskSpec(
        name="modular_addition_mlp",
        description="(a + b) mod p with an MLP on one-hot inputs, AdamW, wd 1.0 (not in the paper; CPU-sized)",
        default_config={
            "p": 47, "train_fraction": 0.5, "hidden": 256, "optimizer": "adamw", "lr": 5e-3,
            "weight_decay": 1.0, "betas": [0.9, 0.999], "batch_size": 1104, "steps": 4000, "eval_every": 20,
        },
        smoke_config={"p": 7, "train_fraction": 0.5, "hidden": 16, "batch_size": 16, "steps": 40, "eval_every": 10},
        threshold=0.9,
        data_depends_on_seed=True,
        implementation=".modular_addition_mlp:ModularAdditionMLPTask",
    ),
    TaskSpec(
        name="cifar100",
        description="CIFAR-100 with a CIFAR ResNet18, AdamW, wd 1.0, crop+flip (He et al. 2016)",
        default_config={
            "data_root": None, "download": False, "checksums": None, "width": 64, "batch_norm": True,
            "residual": True, "augment": True, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1.0,
            "batch_size": 256, "steps": 19600, "eval_every": 196, "train_eval_examples": 10000,
            "eval_batch_size": 500,
        },
        variants={"destabilized": {"batch_norm": False, "residual": False}},
        smoke_config={"width": 4, "batch_size": 4, "steps": 6, "eval_every": 3, "train_eval_examples": 8},
        threshold=0.6,
        threshold_rule=_cifar100_threshold,
        # Where the data lives and whether it may be downloaded do not change results.
        runtime_keys=("data_root", "download", "checksums"),
        implementation=".cifar100:Cifar100Task",
    ),
    TaskSpec(
        name="mlm",
        description="masked language modelling, small BERT on stdlib docstrings (char-level)",
        default_config={
            "corpus_modules": list(DEFAULT_CORPUS_MODULES), "corpus_fingerprint": None, "max_chars": None,
            "seq_len": 64, "eval_every_nth": 10, "mask_prob": 0.15, "eval_mask_seed": 0, "d_model": 64,
            "n_layers": 2, "n_heads": 2, "d_mlp": 256, "optimizer": "adamw", "lr": 1e-3,
            "weight_decay": 0.01, "batch_size": 64, "steps": 5000, "eval_every": 50,
            "train_eval_examples": 1000,
        },
        smoke_config={
            "corpus_modules": ["json", "bisect", "heapq"], "max_chars": 16000, "seq_len": 32, "d_model": 16,
            "n_layers": 1, "n_heads": 2, "d_mlp": 32, "lr": 3e-3, "batch_size": 16, "steps": 40,
            "eval_every": 10, "train_eval_examples": 64,
        },
        threshold=None,
        implementation=".mlm:MLMTask",
    ),
)  # fmt: skip

#: Built-in task name -> :class:`TaskSpec`, in listing order.
BUILTIN_SPECS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}
