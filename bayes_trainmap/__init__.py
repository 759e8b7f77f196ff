"""bayes_trainmap: latent state models of neural-network training dynamics.

Fits Gaussian hidden Markov models over weight-statistic trajectories recorded
across random seeds and turns them into a *training map* (Hu et al., TMLR 2023),
with maximum-likelihood (Baum-Welch) and Bayesian (Pyro) engines.

Submodules are imported lazily so that ``import bayes_trainmap.core.schema`` stays cheap.
"""

from __future__ import annotations

import importlib

from bayes_trainmap.core.version import __version__

_LAZY = {
    "TrajectorySet": "bayes_trainmap.data",
    "load_trajectories": "bayes_trainmap.data",
    "save_trajectories": "bayes_trainmap.data",
    "demo_trajectories": "bayes_trainmap.data",
    "simulate_training_runs": "bayes_trainmap.data.simulate",
    "select_n_states": "bayes_trainmap.fitting.selection",
    "fit": "bayes_trainmap.fitting.pipeline",
    "FitConfig": "bayes_trainmap.fitting.config",
    "FitResult": "bayes_trainmap.fitting.result",
    "FittedRuns": "bayes_trainmap.data.fitted",
    "load_fit_dir": "bayes_trainmap.data.fitdir",
    "write_report": "bayes_trainmap.report",
    "STATISTIC_NAMES": "bayes_trainmap.core.schema",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bayes_trainmap' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_LAZY) + ["__version__"]
