"""Simulated training runs with planted latent structure.

The generator plants exactly the structure the analysis is meant to recover
(sections 2.2-2.3 and 3.4 of Hu et al., 2023):

* a **shared path** of latent states ``0 -> 1 -> ... -> P-1`` that every run
  follows, the last of which is the *converged* state;
* optionally a **detour state** (index ``P``) entered from path state
  ``fork_after`` with probability ``detour_prob`` and left for path state
  ``fork_after + 1``; runs that take it spend ``delay`` extra checkpoints
  before converging, so the training map forks and the detour state has a
  positive convergence-time coefficient while some converged runs never visit it.

Each checkpoint emits the 14 statistics of appendix B (or the first
``n_features`` of them): a state-dependent Gaussian whose mean relaxes
smoothly towards the current state's mean (so transitions look like training
curves rather than jumps), mapped to feature-specific raw offsets and scales so
that the per-run z-scoring of section 2.1 has something to do. The outcome
``eval_accuracy`` rises below ``threshold`` and crosses it within
``convergence_jitter`` checkpoints of the first checkpoint of the converged
state; the crossing step is returned, so the planted convergence step is known.

With ``smoothing=1.0`` and ``dwell="geometric"`` the features are exact samples
of :attr:`SimulatedTrajectories.true_params` (a left-to-right Gaussian HMM in
raw feature units); otherwise ``true_params`` is the HMM with the same states,
means, noise and mean dwell times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.core.schema import (
    RUN_COLUMN,
    SEED_COLUMN,
    STATISTIC_NAMES,
    STEP_COLUMN,
)
from bayes_trainmap.data.trajectories import TrajectorySet
from bayes_trainmap.inference.params import HMMParams

__all__ = ["SimulatedTrajectories", "simulate_training_runs"]


@dataclass(frozen=True)
class SimulatedTrajectories:
    """A simulated trajectory set together with the structure planted in it.

    Attributes
    ----------
    frame : pandas.DataFrame
        Long format, one row per checkpoint, sorted by (``run``, ``step``):
        ``run``, ``seed``, ``step``, the feature columns, ``eval_accuracy``,
        ``eval_loss``, ``train_loss``.
    true_paths : numpy.ndarray, shape (n,)
        Planted latent state of every checkpoint, concatenated in run order.
    lengths : numpy.ndarray, shape (N,)
        Checkpoints per run, in run order.
    run_ids : list of str
        Run names in the order of ``lengths`` (sorted, as ``TrajectorySet`` sorts).
    detour_states : list of int
        Planted detour states (``[]`` when ``detour=False``).
    convergence_steps : numpy.ndarray, shape (N,)
        Step at which ``eval_accuracy`` first reaches the threshold: the first
        checkpoint of the converged state up to ``convergence_jitter`` (float; NaN if a
        run never gets there, which only ``dwell="geometric"`` can produce).
    visits_detour : numpy.ndarray of bool, shape (N,)
        Whether each run took the detour.
    planted : dict
        Every design choice and the true HMM arrays (``start_prob``,
        ``trans_mat``, ``means``, ``covars`` in raw feature units; ``latent_means``
        before the raw affine map; ``feature_offsets``, ``feature_scales``).
    """

    frame: pd.DataFrame
    true_paths: np.ndarray
    lengths: np.ndarray
    run_ids: list[str]
    detour_states: list[int]
    convergence_steps: np.ndarray
    visits_detour: np.ndarray
    planted: dict[str, Any] = field(repr=False)

    @property
    def feature_names(self) -> list[str]:
        """Names of the feature columns."""
        return list(self.planted["feature_names"])

    @property
    def n_states(self) -> int:
        """Number of planted latent states (path states plus detour state)."""
        return int(self.planted["n_states"])

    @property
    def trajectories(self):
        """The frame as a :class:`bayes_trainmap.data.TrajectorySet`."""
        return TrajectorySet(self.frame.copy(), dict(self.planted["metadata"]))

    @property
    def true_params(self):
        """The planted model as an :class:`inference.params.HMMParams` (raw units, diag)."""
        p = self.planted
        return HMMParams(
            start_prob=np.asarray(p["start_prob"], dtype=float),
            trans_mat=np.asarray(p["trans_mat"], dtype=float),
            means=np.asarray(p["means"], dtype=float),
            covars=np.asarray(p["covars"], dtype=float),
            covariance_type="diag",
            feature_names=list(p["feature_names"]),
            normalization={"method": "none"},
        )

    def feature_matrix(self) -> np.ndarray:
        """Raw features, shape (n, d), concatenated in run order."""
        return self.frame[self.feature_names].to_numpy(dtype=float)


def _dwell_times(rng: np.random.Generator, mean: float, jitter: float, kind: str, size: int) -> np.ndarray:
    if kind == "geometric":
        return rng.geometric(1.0 / mean, size=size)
    low, high = mean * (1.0 - jitter), mean * (1.0 + jitter)
    return np.maximum(1, np.rint(rng.uniform(low, high, size=size))).astype(int)


def _accuracy_curve(rng: np.random.Generator, length: int, conv_index: int | None, threshold: float) -> np.ndarray:
    """Accuracy that stays below ``threshold`` before ``conv_index`` and at or above it from there."""
    t = np.arange(length, dtype=float)
    noise = rng.normal(0.0, 0.005, size=length)
    if conv_index is None:
        frac = t / max(length - 1, 1)
        return np.clip(0.1 + (threshold - 0.2) * frac + noise, 0.0, threshold - 0.01)
    frac = t / max(conv_index, 1)
    before = np.clip(0.1 + (threshold - 0.15) * frac + noise, 0.0, threshold - 0.005)
    gain = (1.0 - threshold) * 0.9 * (1.0 - np.exp(-(t - conv_index) / 10.0))
    after = np.clip(threshold + 0.002 + gain + np.abs(noise), threshold, 1.0)
    return np.where(t < conv_index, before, after)


def simulate_training_runs(
    n_runs: int = 40,
    *,
    n_checkpoints: int = 200,
    detour: bool = True,
    detour_prob: float = 0.4,
    delay: int = 40,
    path_dwell: tuple[int, ...] = (30, 40, 30),
    fork_after: int = 1,
    dwell: str = "uniform",
    dwell_jitter: float = 0.25,
    n_features: int = 14,
    separation: float = 1.5,
    noise: float = 0.3,
    smoothing: float = 0.5,
    ragged: bool = False,
    step_interval: int = 10,
    threshold: float = 0.9,
    convergence_jitter: int = 2,
    random_state: int | np.random.Generator | None = 0,
) -> SimulatedTrajectories:
    """Simulate a set of training runs with a planted path, fork and detour.

    Parameters
    ----------
    n_runs : int
        Number of runs (random seeds), N.
    n_checkpoints : int
        Checkpoints per run, T (the maximum when ``ragged``).
    detour : bool
        Plant the optional detour state; ``False`` gives a linear map.
    detour_prob : float
        Probability that a run takes the detour.
    delay : int
        Checkpoints spent in the detour state (its mean for ``dwell="geometric"``);
        the convergence of detour runs is delayed by exactly this much in expectation.
    path_dwell : tuple of int
        Mean checkpoints spent in each non-final path state; the path has
        ``len(path_dwell) + 1`` states, the last being the converged state.
    fork_after : int
        Path state from which the detour leaves (it rejoins at ``fork_after + 1``).
    dwell : {"uniform", "geometric"}
        Dwell-time law: uniform within ``mean * (1 +- dwell_jitter)``, or the
        geometric law an HMM implies.
    n_features : int
        Number of statistics, 1..14 (the first ``n_features`` of ``STATISTIC_NAMES``).
    separation : float
        Standard deviation of the per-feature change in latent mean between
        consecutive states (latent units; the emission noise is ``noise``).
    noise : float
        Emission standard deviation in latent units.
    smoothing : float
        Rate in (0, 1] at which the emitted mean relaxes towards the current
        state's mean each checkpoint (1 = jumps, exact HMM emissions).
    ragged : bool
        Truncate runs at random lengths in ``[0.75 T, T]``, never before
        10 checkpoints after convergence.
    step_interval : int
        Training steps between checkpoints (``step = t * step_interval``).
    threshold : float
        Accuracy threshold crossed exactly at the planted convergence step.
    convergence_jitter : int
        The accuracy crosses ``threshold`` this many checkpoints (uniformly in
        ``-j..j``) from the first checkpoint of the converged state, so that
        convergence is not an exact linear function of occupancy.
    random_state : int, numpy.random.Generator or None
        Seed; the output is a deterministic function of it.

    Returns
    -------
    SimulatedTrajectories
    """
    plan = _Plan(n_checkpoints, detour, detour_prob, delay, path_dwell, fork_after, dwell, dwell_jitter,
                 n_features, separation, noise, smoothing, ragged, step_interval, threshold, convergence_jitter)
    plan.check(n_runs)
    rng = np.random.default_rng(random_state)
    latent_means, offsets, scales = _feature_geometry(rng, plan)
    width = max(3, len(str(n_runs - 1)))
    run_ids = [f"run_{i:0{width}d}" for i in range(n_runs)]
    runs = [_simulate_run(rng, plan, latent_means, offsets, scales) for _ in run_ids]
    return _simulated_set(plan, run_ids, runs, latent_means, offsets, scales)


@dataclass
class _Plan:
    """The planted structure of :func:`simulate_training_runs` (its arguments, bar
    ``n_runs`` and ``random_state``) and the state numbering it implies."""

    n_checkpoints: int
    detour: bool
    detour_prob: float
    delay: int
    path_dwell: tuple[int, ...]
    fork_after: int
    dwell: str
    dwell_jitter: float
    n_features: int
    separation: float
    noise: float
    smoothing: float
    ragged: bool
    step_interval: int
    threshold: float
    convergence_jitter: int

    @property
    def n_path(self) -> int:
        """Number of path states, the converged one included."""
        return len(self.path_dwell) + 1

    @property
    def n_states(self) -> int:
        return self.n_path + (1 if self.detour else 0)

    @property
    def converged_state(self) -> int:
        return self.n_path - 1

    @property
    def detour_state(self) -> int | None:
        return self.n_path if self.detour else None

    def check(self, n_runs: int) -> None:
        """Raise :class:`BayesTrainmapError` naming the first invalid argument."""
        path_dwell, delay, dwell_jitter = self.path_dwell, self.delay, self.dwell_jitter
        if n_runs < 2:
            raise BayesTrainmapError(f"n_runs must be >= 2, got {n_runs}")
        if not 1 <= self.n_features <= len(STATISTIC_NAMES):
            raise BayesTrainmapError(f"n_features must be in 1..{len(STATISTIC_NAMES)}, got {self.n_features}")
        if len(path_dwell) < 1 or min(path_dwell) < 1:
            raise BayesTrainmapError(f"path_dwell must be a non-empty tuple of positive ints, got {path_dwell}")
        if self.detour and not 0 <= self.fork_after < len(path_dwell):
            raise BayesTrainmapError(f"fork_after must be in 0..{len(path_dwell) - 1}, got {self.fork_after}")
        if not 0.0 <= self.detour_prob <= 1.0:
            raise BayesTrainmapError(f"detour_prob must be in [0, 1], got {self.detour_prob}")
        if not 0.0 < self.smoothing <= 1.0:
            raise BayesTrainmapError(f"smoothing must be in (0, 1], got {self.smoothing}")
        if self.dwell not in ("uniform", "geometric"):
            raise BayesTrainmapError(f"dwell must be 'uniform' or 'geometric', got {self.dwell!r}")
        if delay < 1:
            raise BayesTrainmapError(f"delay must be >= 1, got {delay}")
        min_needed = sum(path_dwell) + (delay if self.detour else 0) + 2
        if self.dwell == "uniform" and self.n_checkpoints < min_needed * (1 + dwell_jitter):
            raise BayesTrainmapError(
                f"n_checkpoints={self.n_checkpoints} is too short for the planted path; "
                f"expected at least {int(np.ceil(min_needed * (1 + dwell_jitter)))}"
            )


def _feature_geometry(rng: np.random.Generator, plan: _Plan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latent state means ``(K, d)`` and the per-feature offsets and scales ``(d,)``.

    The path means are a random walk (so features drift monotonically on average,
    like training curves); the detour branches off the fork state.
    """
    n_features, separation = plan.n_features, plan.separation
    latent_means = np.zeros((plan.n_states, n_features))
    latent_means[0] = rng.normal(0.0, separation, n_features)
    for j in range(1, plan.n_path):
        latent_means[j] = latent_means[j - 1] + rng.normal(0.0, separation, n_features)
    if plan.detour:
        latent_means[plan.detour_state] = latent_means[plan.fork_after] + rng.normal(0.0, separation, n_features)
    offsets = rng.normal(0.0, 2.0, n_features)
    scales = np.exp(rng.normal(0.0, 1.0, n_features))
    return latent_means, offsets, scales


def _run_path(rng: np.random.Generator, plan: _Plan) -> tuple[np.ndarray, int | None, int, bool]:
    """One run's planted state path ``(T_i,)``, first converged index (``None`` if the
    run never converges), length ``T_i`` and whether it takes the detour."""
    n_path, detour_state, n_checkpoints = plan.n_path, plan.detour_state, plan.n_checkpoints
    takes_detour = bool(plan.detour and rng.random() < plan.detour_prob)
    sequence = list(range(n_path - 1))
    if takes_detour:
        sequence.insert(plan.fork_after + 1, detour_state)
    means_of = {j: plan.path_dwell[j] for j in range(n_path - 1)}
    if plan.detour:
        means_of[detour_state] = plan.delay
    durations = [int(_dwell_times(rng, means_of[s], plan.dwell_jitter, plan.dwell, 1)[0]) for s in sequence]
    path = np.concatenate([np.full(d, s) for s, d in zip(sequence, durations)] + [np.array([], int)])
    conv_index: int | None = int(path.size)
    length = n_checkpoints
    if conv_index >= n_checkpoints:
        conv_index = None
        path = path[:n_checkpoints]
    else:
        if plan.ragged:
            low = max(conv_index + 10, int(0.75 * n_checkpoints))
            length = int(rng.integers(min(low, n_checkpoints), n_checkpoints + 1))
        path = np.concatenate([path, np.full(length - path.size, plan.converged_state)])
    return path.astype(np.int64), conv_index, length, takes_detour


def _simulate_run(rng, plan: _Plan, latent_means, offsets, scales) -> tuple:
    """One run: ``((raw, steps, accuracy, eval_loss, train_loss), path, length,
    convergence step or NaN, takes_detour)``; ``raw`` is ``(T_i, d)``, the rest ``(T_i,)``."""
    path, conv_index, length, takes_detour = _run_path(rng, plan)
    smoothing = plan.smoothing
    target = latent_means[path]
    # m_t = m_{t-1} + smoothing * (target_t - m_{t-1}), m_0 = target_0, as a linear filter.
    mean_track, _ = lfilter(
        [smoothing], [1.0, smoothing - 1.0], target, axis=0, zi=((1.0 - smoothing) * target[:1])
    )
    latent = mean_track + rng.normal(0.0, plan.noise, size=target.shape)
    raw = offsets + scales * latent

    jitter = plan.convergence_jitter
    if conv_index is not None and jitter:
        shift = int(rng.integers(-jitter, jitter + 1))
        conv_index = int(np.clip(conv_index + shift, 1, length - 1))
    accuracy = _accuracy_curve(rng, length, conv_index, plan.threshold)
    eval_loss = -np.log(np.clip(accuracy, 1e-3, 1.0)) + np.abs(rng.normal(0.0, 0.01, length))
    train_loss = 0.8 * eval_loss + np.abs(rng.normal(0.0, 0.01, length))
    steps = np.arange(length, dtype=np.int64) * plan.step_interval
    conv_step = np.nan if conv_index is None else float(steps[conv_index])
    return (raw, steps, accuracy, eval_loss, train_loss), path, length, conv_step, takes_detour


def _planted_chain(plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    """The planted HMM's start ``(K,)`` and transition ``(K, K)`` probabilities: a
    left-to-right chain whose self-loops give the mean dwell times."""
    n_states, n_path, fork_after, delay = plan.n_states, plan.n_path, plan.fork_after, plan.delay
    detour, detour_state = plan.detour, plan.detour_state
    trans = np.zeros((n_states, n_states))
    for j in range(n_path - 1):
        stay = 1.0 - 1.0 / plan.path_dwell[j]
        trans[j, j] = stay
        if detour and j == fork_after:
            trans[j, detour_state] = (1.0 - stay) * plan.detour_prob
            trans[j, j + 1] = (1.0 - stay) * (1.0 - plan.detour_prob)
        else:
            trans[j, j + 1] = 1.0 - stay
    trans[plan.converged_state, plan.converged_state] = 1.0
    if detour:
        trans[detour_state, detour_state] = 1.0 - 1.0 / delay
        trans[detour_state, fork_after + 1] = 1.0 / delay
    start = np.zeros(n_states)
    start[0] = 1.0
    return start, trans


def _planted_truth(plan: _Plan, latent_means, offsets, scales) -> dict[str, Any]:
    """The ``planted`` dict of :class:`SimulatedTrajectories`."""
    detour = plan.detour
    start, trans = _planted_chain(plan)
    return {
        "n_states": plan.n_states,
        "path_states": list(range(plan.n_path)),
        "converged_state": plan.converged_state,
        "detour_state": plan.detour_state,
        "fork_after": plan.fork_after if detour else None,
        "detour_prob": plan.detour_prob if detour else 0.0,
        "delay": plan.delay if detour else 0,
        "path_dwell": list(plan.path_dwell),
        "dwell": plan.dwell,
        "dwell_jitter": plan.dwell_jitter,
        "smoothing": plan.smoothing,
        "noise": plan.noise,
        "separation": plan.separation,
        "threshold": plan.threshold,
        "convergence_jitter": plan.convergence_jitter,
        "outcome": "eval_accuracy",
        "feature_names": list(STATISTIC_NAMES[: plan.n_features]),
        "start_prob": start,
        "trans_mat": trans,
        "latent_means": latent_means,
        "means": offsets + scales * latent_means,
        "covars": np.tile((scales * plan.noise) ** 2, (plan.n_states, 1)),
        "feature_offsets": offsets,
        "feature_scales": scales,
        "metadata": {"task": "simulated", "detour": detour, "threshold": plan.threshold},
    }


def _simulated_set(plan: _Plan, run_ids: list[str], runs: list[tuple], latent_means, offsets, scales
                   ) -> SimulatedTrajectories:
    """Stack the runs of :func:`_simulate_run` into a :class:`SimulatedTrajectories`."""
    frames, paths, lengths, conv_steps, took = (list(column) for column in zip(*runs))
    features = list(STATISTIC_NAMES[: plan.n_features])
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    columns = {
        RUN_COLUMN: np.repeat(np.asarray(run_ids, dtype=object), lengths_arr),
        SEED_COLUMN: np.repeat(np.arange(len(run_ids), dtype=np.int64), lengths_arr),
        STEP_COLUMN: np.concatenate([f[1] for f in frames]),
    }
    raw_all = np.concatenate([f[0] for f in frames])
    columns.update({name: raw_all[:, j] for j, name in enumerate(features)})
    for offset, name in ((2, "eval_accuracy"), (3, "eval_loss"), (4, "train_loss")):
        columns[name] = np.concatenate([f[offset] for f in frames])
    return SimulatedTrajectories(
        frame=pd.DataFrame(columns),
        true_paths=np.concatenate(paths),
        lengths=lengths_arr,
        run_ids=run_ids,
        detour_states=[plan.detour_state] if plan.detour else [],
        convergence_steps=np.asarray(conv_steps, dtype=float),
        visits_detour=np.asarray(took, dtype=bool),
        planted=_planted_truth(plan, latent_means, offsets, scales),
    )
