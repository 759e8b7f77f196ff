"""Registry of training tasks: name -> :class:`~bayes_trainmap.tasks.base.Task` subclass.

Built-in tasks are described in :mod:`tasks.catalog` (metadata only, no torch) and
their classes imported on first use, so listing tasks imports no training code and
running one task never imports another's dependencies. Adding a built-in task is one
:class:`~tasks.catalog.TaskSpec` in the catalog; a user task can be added at run time
with :func:`register_task`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bayes_trainmap.core.errors import TaskError

from .catalog import BUILTIN_SPECS, TaskSpec

if TYPE_CHECKING:
    from .base import Task

_REGISTERED: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Register a :class:`Task` subclass under ``cls.name`` (usable as a decorator)."""
    # lazily: the Task base class imports torch, which listing the built-in tasks does not need
    from .base import Task

    if not (isinstance(cls, type) and issubclass(cls, Task)) or not cls.name:
        raise TaskError(f"expected a Task subclass with a name, got {cls!r}")
    _REGISTERED[cls.name] = cls
    return cls


def task_names() -> list[str]:
    """Names of all known tasks (built-in first, then registered)."""
    return list(dict.fromkeys([*BUILTIN_SPECS, *_REGISTERED]))


def get_task_class(name: str) -> type[Task]:
    """The Task subclass registered under ``name``; ``TaskError`` if unknown."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    module_name, class_name = task_spec(name).implementation.split(":")
    try:
        module = importlib.import_module(module_name, package=__package__)
    except ImportError as exc:
        raise TaskError(f"task {name!r} is unavailable: {exc}") from exc
    cls = getattr(module, class_name)
    _REGISTERED[name] = cls
    return cls


def task_spec(name: str) -> TaskSpec:
    """The :class:`~tasks.catalog.TaskSpec` of a task, without importing a built-in task's code."""
    if name in _REGISTERED:
        return _REGISTERED[name].task_spec()
    if name not in BUILTIN_SPECS:
        raise TaskError(f"unknown task {name!r}; expected one of {', '.join(task_names())}")
    return BUILTIN_SPECS[name]


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
