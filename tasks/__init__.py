"""Training tasks on one shared torch training loop, weight statistics and the recorder hook.

Modules:

- :mod:`tasks.base` -- the :class:`~tasks.base.Task` interface (how to add a task);
- :mod:`tasks.registry` -- task names -> classes (``get_task``, ``register_task``);
- :mod:`tasks.stats` -- the 14 weight statistics of appendix B, per model or per ensemble;
- :mod:`tasks.recorder` -- ``TrajectoryRecorder`` for your own loop, and
  ``trajectory_from_checkpoints`` for a directory of saved state dicts;
- :mod:`tasks.loop` -- the shared per-seed training loop (``train_sequential``);
- :mod:`tasks.ensemble` -- many seeds at once with ``torch.func`` (``train_ensemble``);
- :mod:`tasks.collect` -- resumable collections of runs (``collect``);
- :mod:`tasks.cli` -- the ``collect`` and ``tasks`` commands;
- built-in tasks: ``sparse_parities``, ``mnist``/``digits`` (``image_mlp``),
  ``modular_addition``, ``cifar100``, ``mlm`` (+ ``hf_checkpoints`` for MultiBERTs).
"""
