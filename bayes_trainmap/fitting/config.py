"""The options of a fit: one validated, JSON round-tripping :class:`FitConfig`.

``config.json`` of a fit directory holds ``FitConfig.to_dict()`` under ``"config"``;
``FitConfig.from_dict`` of that dict gives the same config back. Every option is checked
in :meth:`FitConfig.validate` before any work starts, so that a bad option fails in
milliseconds rather than after minutes of fitting.

Names follow scikit-learn where an analogue exists (``n_restarts``, ``covariance_type``,
``random_state``); the pre-0.2 names ``restarts``, ``covariance`` and ``seed`` are
accepted by :meth:`FitConfig.from_options` with a ``DeprecationWarning``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

from bayes_trainmap.core.defaults import is_device_name
from bayes_trainmap.core.errors import BayesTrainmapError
from bayes_trainmap.fitting.robustness import (
    DEFAULT_BAGS,
    DEFAULT_K_RESAMPLES,
    INTERVAL_METHODS,
)
from bayes_trainmap.fitting.selection import parse_states
from bayes_trainmap.inference.params import COVARIANCE_TYPES

__all__ = ["BAYESIAN_MODES", "DEPRECATED_NAMES", "MODES", "FitConfig"]

#: Inference modes: maximum likelihood (Baum-Welch), MAP and SVI (Pyro).
MODES: tuple[str, ...] = ("mle", "map", "svi")
BAYESIAN_MODES: tuple[str, ...] = ("map", "svi")
#: Values of :attr:`FitConfig.outcome_direction`.
OUTCOME_DIRECTIONS: tuple[str, ...] = ("auto", "higher", "lower")
#: Keys of :attr:`FitConfig.bayes_options` (see :mod:`bayes_trainmap.fitting.bayesian`).
BAYES_OPTION_NAMES: tuple[str, ...] = ("draws", "steps", "lr", "guide", "bag_steps")
#: Old option name -> current name (kept as deprecated aliases for one release).
DEPRECATED_NAMES: dict[str, str] = {"restarts": "n_restarts", "covariance": "covariance_type", "seed": "random_state"}


@dataclass(frozen=True)
class FitConfig:
    """What to fit and how (see ``python -m bayes_trainmap fit --help``).

    Attributes
    ----------
    mode : {"mle", "map", "svi"}
        Baum-Welch maximum likelihood, or a Bayesian fit started from the MLE of the chosen K.
    states : "auto", int, "K", "A-B" or tuple of consecutive int
        Candidate numbers of states; "auto" is 1-8 (the paper's range), capped at what
        the training runs support.
    n_restarts : int
        Baum-Welch restarts per K (k-means initialisation).
    covariance_type : {"full", "diag"}
    features : tuple of str or None
        Feature columns (default: the weight statistics present).
    device : {"auto", "cpu", "cuda", "cuda:N"}
    random_state : int
        Seeds the 80/20 run split, every restart and the baselines.
    val_fraction : float
        Share of runs held out for BIC, in (0, 1).
    window : int
        z-scoring window in checkpoints.
    n_iter, tol, min_covar : int, float, float
        Baum-Welch iteration cap, tolerance and covariance floor.
    min_length : int
        Minimum checkpoints per run.
    outcome : str or None
        Outcome column defining convergence (default ``eval_accuracy`` when present).
    threshold : float or None
        Convergence threshold (default: the task preset, see :mod:`bayes_trainmap.analysis.convergence`).
    task : str or None
        Task whose threshold preset applies.
    outcome_direction : {"auto", "higher", "lower"}
        Whether crossing the threshold means ``>=`` (higher is better) or ``<=``;
        "auto": lower for names containing "loss".
    bayes_options : dict
        Settings of the Bayesian modes: any of ``draws``, ``steps``, ``lr``, ``guide``,
        and ``bag_steps`` (L-BFGS iterations after EM in the MAP refit per bag, default 0).
    intervals : {"bagged", "posterior"}
        Interval method of the Bayesian modes: BayesBag over runs (carries seed-to-seed
        variation) or the model's plain posterior.
    bootstrap : int
        Resamples of the runs for the robustness section and the bagged intervals (0 skips).
    k_resamples : int
        Resamples of the K selection for the stability of K (0 skips).
    interval : float
        Level of every interval in the report, in (0, 1).
    """

    mode: str = "mle"
    states: Any = "auto"
    n_restarts: int = 5
    covariance_type: str = "full"
    features: tuple[str, ...] | None = None
    device: str = "cpu"
    random_state: int = 0
    val_fraction: float = 0.2
    window: int = 1000
    n_iter: int = 100
    tol: float = 1e-4
    min_covar: float = 1e-3
    min_length: int = 2
    outcome: str | None = None
    threshold: float | None = None
    task: str | None = None
    outcome_direction: str = "auto"
    bayes_options: dict[str, Any] = field(default_factory=dict)
    intervals: str = "bagged"
    bootstrap: int = DEFAULT_BAGS
    k_resamples: int = DEFAULT_K_RESAMPLES
    interval: float = 0.9

    def __post_init__(self) -> None:
        if self.features is not None:
            object.__setattr__(self, "features", tuple(str(f) for f in self.features))
        if isinstance(self.states, list):
            object.__setattr__(self, "states", tuple(self.states))
        object.__setattr__(self, "bayes_options", dict(self.bayes_options or {}))
        self.validate()

    # -- checks ------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`BayesTrainmapError` naming the first bad option."""
        _choice("mode", self.mode, MODES)
        _choice("covariance_type", self.covariance_type, COVARIANCE_TYPES)
        _choice("outcome_direction", self.outcome_direction, OUTCOME_DIRECTIONS)
        _choice("intervals", self.intervals, INTERVAL_METHODS)
        _integer("bootstrap", self.bootstrap, 0, "bootstrap must be a non-negative number of resamples")
        _integer("k_resamples", self.k_resamples, 0, "k_resamples must be a non-negative number of resamples")
        _number("interval", self.interval, lambda v: 0 < v < 1, "interval must be in (0, 1)")
        parse_states(self.states)
        _integer("n_restarts", self.n_restarts, 1, "n_restarts must be at least 1")
        _integer("random_state", self.random_state, 0, "random_state must be a non-negative integer")
        _integer("window", self.window, 1, "window must be a positive number of checkpoints")
        _integer("n_iter", self.n_iter, 1, "expected n_iter >= 1")
        _integer("min_length", self.min_length, 2, "min_length must be at least 2")
        _number("val_fraction", self.val_fraction, lambda v: 0 < v < 1, "val_fraction must be in (0, 1)")
        _number("tol", self.tol, lambda v: v >= 0, "expected tol >= 0")
        _number("min_covar", self.min_covar, lambda v: v > 0, "expected min_covar > 0")
        if self.threshold is not None:
            _number("threshold", self.threshold, math.isfinite, "threshold must be a finite number")
        if not is_device_name(self.device):
            raise BayesTrainmapError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        unknown = sorted(set(self.bayes_options) - set(BAYES_OPTION_NAMES))
        if unknown:
            raise BayesTrainmapError(f"unknown Bayesian option(s) {unknown}; expected any of {list(BAYES_OPTION_NAMES)}")
        if self.bayes_options and self.mode not in BAYESIAN_MODES:
            raise BayesTrainmapError(
                f"Bayesian option(s) {sorted(self.bayes_options)} apply to --mode map or svi, not {self.mode!r}"
            )
        if self.features is not None and self.outcome is not None and self.outcome in self.features:
            raise BayesTrainmapError(f"the convergence outcome {self.outcome!r} cannot also be a model feature")

    # -- construction and serialisation ----------------------------------------------
    @classmethod
    def from_options(cls, config: "FitConfig | None" = None, **options: Any) -> "FitConfig":
        """``config`` (default: the defaults) with ``options`` replacing its fields.

        Deprecated names (:data:`DEPRECATED_NAMES`) are translated with a warning;
        unknown names are an error.
        """
        for old, new in DEPRECATED_NAMES.items():
            if old in options:
                warnings.warn(f"option {old!r} is deprecated; use {new!r}", DeprecationWarning, stacklevel=3)
                if new in options:
                    raise BayesTrainmapError(f"give either {old!r} or {new!r}, not both")
                options[new] = options.pop(old)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise BayesTrainmapError(f"unknown fit option(s) {unknown}; expected any of {sorted(names)}")
        return dataclasses.replace(config or cls(), **options)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_dict` inverts it."""
        out = dataclasses.asdict(self)
        out["features"] = list(self.features) if self.features is not None else None
        out["states"] = list(self.states) if isinstance(self.states, (tuple, range)) else self.states
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FitConfig":
        """The config of :meth:`to_dict` (e.g. ``config.json``'s ``"config"``)."""
        return cls.from_options(**dict(data))


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise BayesTrainmapError(f"unknown {name.replace('_', ' ')} {value!r}; expected one of {', '.join(choices)}")


def _integer(name: str, value: Any, minimum: int, message: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise BayesTrainmapError(f"{message} (an integer >= {minimum}), got {name}={value!r}")


def _number(name: str, value: Any, ok, message: str) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or math.isnan(number) or not ok(number):
        raise BayesTrainmapError(f"{message}, got {name}={value!r}")
