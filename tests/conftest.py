"""Shared fixtures: small trajectory sets in the real on-disk format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_trainmap.data import TrajectorySet, save_trajectories
from bayes_trainmap.core.schema import STATISTIC_NAMES


def make_frame(
    lengths=(30, 25, 35, 28),
    n_features: int = 3,
    seed: int = 0,
    step_interval: int = 10,
    run_prefix: str = "run_",
) -> pd.DataFrame:
    """Long-format frame of ragged runs with random-walk features and an accuracy outcome."""
    rng = np.random.default_rng(seed)
    features = list(STATISTIC_NAMES[:n_features])
    frames = []
    for i, length in enumerate(lengths):
        walk = np.cumsum(rng.normal(size=(length, n_features)), axis=0) + rng.normal(0, 5, n_features)
        frame = pd.DataFrame(walk, columns=features)
        frame.insert(0, "step", np.arange(length, dtype=np.int64) * step_interval)
        frame.insert(0, "seed", i)
        frame.insert(0, "run", f"{run_prefix}{i}")
        frame["eval_accuracy"] = np.linspace(0.1, 0.95, length)
        frame["train_loss"] = np.linspace(2.0, 0.1, length)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def planted_trajectories(
    n_runs: int = 8, n_checkpoints: int = 60, n_features: int = 3, separation: float = 4.0, seed: int = 0
) -> TrajectorySet:
    """Runs of a left-to-right 3-state HMM with well-separated states (planted K = 3).

    Each run spends a random dwell in states 0 and 1 and ends in state 2; the
    emission means are far apart relative to the unit noise, and every run gets a
    random raw offset/scale per feature so that the per-run z-scoring matters.
    """
    rng = np.random.default_rng(seed)
    features = list(STATISTIC_NAMES[:n_features])
    means = rng.normal(0.0, separation, size=(3, n_features))
    means[1] += separation  # make sure consecutive states differ on average
    means[2] -= separation
    frames = []
    for i in range(n_runs):
        first = int(rng.integers(n_checkpoints // 5, n_checkpoints // 3))
        second = int(rng.integers(n_checkpoints // 5, n_checkpoints // 3))
        path = np.concatenate(
            [np.zeros(first, int), np.ones(second, int), np.full(n_checkpoints - first - second, 2)]
        )
        latent = means[path] + rng.normal(size=(n_checkpoints, n_features))
        raw = rng.normal(0, 3, n_features) + np.exp(rng.normal(0, 0.5, n_features)) * latent
        frame = pd.DataFrame(raw, columns=features)
        frame.insert(0, "step", np.arange(n_checkpoints, dtype=np.int64) * 5)
        frame.insert(0, "seed", i)
        frame.insert(0, "run", f"run_{i:02d}")
        frame["eval_accuracy"] = np.where(path == 2, 0.95, 0.2 + 0.3 * path)
        frames.append(frame)
    return TrajectorySet(pd.concat(frames, ignore_index=True), {"task": "planted", "n_states": 3})


@pytest.fixture
def ragged_set() -> TrajectorySet:
    """Four ragged runs, three statistics, two outcomes."""
    return TrajectorySet(make_frame(), {"task": "toy", "hyperparameters": {"lr": 0.01}})


@pytest.fixture(scope="session")
def planted_set() -> TrajectorySet:
    """Eight runs x 60 checkpoints from a well-separated 3-state HMM."""
    return planted_trajectories()


@pytest.fixture
def planted_dir(tmp_path, planted_set) -> str:
    """The planted set saved as a directory of per-run Parquet files."""
    path = tmp_path / "planted"
    save_trajectories(planted_set, path)
    return str(path)


@pytest.fixture
def frame_factory():
    """:func:`make_frame` (import-free access for test modules)."""
    return make_frame


@pytest.fixture
def planted_factory():
    """:func:`planted_trajectories` (import-free access for test modules)."""
    return planted_trajectories
