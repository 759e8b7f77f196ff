"""What the paper reads off a fitted HMM: the training map and its edge labels
(appendix A importance), convergence steps, the detour regression, trajectory
dissimilarity and the baselines, bundled by :func:`analyze` into :class:`Analysis`."""

from bayes_trainmap.analysis.bundle import (
    ANALYSIS_FORMAT,
    UNCERTAINTY_KEYS,
    Analysis,
    analyze,
    compute_filtered,
    validate_uncertainty,
)

__all__ = ["ANALYSIS_FORMAT", "UNCERTAINTY_KEYS", "Analysis", "analyze", "compute_filtered", "validate_uncertainty"]
