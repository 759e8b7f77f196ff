"""Exceptions raised by the HMM engines.

``inference`` depends on no other part of the project, so it defines its own errors;
the layers above wrap them into user-facing errors at their boundary.
"""

from __future__ import annotations


class InferenceError(ValueError):
    """Invalid input to an engine function or estimator (shapes, values, options)."""


class ModelSizeError(InferenceError):
    """The requested model cannot be fitted to the data given (e.g. more states than data)."""


class DivergenceError(InferenceError):
    """An optimisation left the finite region (e.g. SVI with too large a learning rate)."""
