"""Registry of training tasks: name -> :class:`~bayes_trainmap.tasks.base.Task` subclass.

Built-in tasks are listed as ``"module:Class"`` strings and imported on first use,
so listing or running one task never imports another's dependencies. Adding a
built-in task is one line in ``_BUILTIN_TASKS``; a user task can be added at run
time with :func:`register_task`.
"""

from __future__ import annotations

import importlib
from typing import Any

from bayes_trainmap.core.errors import TaskError

from .base import Task

_BUILTIN_TASKS: dict[str, str] = {
    "sparse_parities": ".sparse_parities:SparseParitiesTask",
    "mnist": ".image_mlp:MnistTask",
    "digits": ".image_mlp:DigitsTask",
    "modular_addition": ".modular_addition:ModularAdditionTask",
    "modular_addition_mlp": ".modular_addition_mlp:ModularAdditionMLPTask",
    "cifar100": ".cifar100:Cifar100Task",
    "mlm": ".mlm:MLMTask",
}

_REGISTERED: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Register a :class:`Task` subclass under ``cls.name`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Task)) or not cls.name:
        raise TaskError(f"expected a Task subclass with a name, got {cls!r}")
    _REGISTERED[cls.name] = cls
    return cls


def task_names() -> list[str]:
    """Names of all known tasks (built-in first, then registered)."""
    return list(dict.fromkeys([*_BUILTIN_TASKS, *_REGISTERED]))


def get_task_class(name: str) -> type[Task]:
    """The Task subclass registered under ``name``; ``TaskError`` if unknown."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    target = _BUILTIN_TASKS.get(name)
    if target is None:
        raise TaskError(f"unknown task {name!r}; expected one of {', '.join(task_names())}")
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name, package=__package__)
    except ImportError as exc:
        raise TaskError(f"task {name!r} is unavailable: {exc}") from exc
    cls = getattr(module, class_name)
    _REGISTERED[name] = cls
    return cls


def get_task(name: str, variant: str = "default", size: str = "default", **overrides: Any) -> Task:
    """A configured task instance, e.g. ``get_task("sparse_parities", size="smoke", steps=50)``."""
    return get_task_class(name)(variant=variant, size=size, overrides=overrides)


class _TasksView(dict):
    """Read-only, lazily importing ``name -> Task class`` mapping (``TASKS``)."""

    def __getitem__(self, name: str) -> type[Task]:
        return get_task_class(name)

    def __iter__(self):
        return iter(task_names())

    def __len__(self) -> int:
        return len(task_names())

    def __contains__(self, name: object) -> bool:
        return name in task_names()

    def keys(self):
        return task_names()

    def items(self):
        return [(n, get_task_class(n)) for n in task_names()]

    def values(self):
        return [get_task_class(n) for n in task_names()]

    def get(self, name, default=None):
        return get_task_class(name) if name in task_names() else default


#: ``name -> Task class`` (lazily imported), as promised by ``docs/architecture.md``.
TASKS: dict[str, type[Task]] = _TasksView()
