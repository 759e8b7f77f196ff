"""Bayesian Gaussian HMM (issue 5): the public face of the Pyro path.

Modules
-------
:mod:`inference.bayes_likelihood`
    :func:`hmm_log_likelihood` -- the exact marginal log-likelihood of ragged runs as a
    torch op whose forward is the compiled forward-backward and whose backward is
    Fisher's identity (posteriors, expected transitions, expected start).
:mod:`inference.bayes_model`
    :class:`HMMPrior` (Dirichlet/sticky Dirichlet, Normal means, HalfNormal/LogNormal
    scales, LKJ correlations), :func:`hmm_model` (fast, states marginalised via
    ``pyro.factor``) and :func:`enumerated_hmm_model` (textbook ``pyro.markov`` +
    enumeration, for ``TraceEnum_ELBO``/``infer_discrete`` on small data).
:mod:`inference.bayes_fit`
    :func:`fit_map` (``AutoDelta``, L-BFGS-B or Adam) and :func:`fit_svi`
    (``AutoNormal`` / ``AutoLowRankMultivariateNormal`` / ``AutoMultivariateNormal``,
    warm-started at the MAP), both returning a :class:`BayesianFit`.

The propagation of posterior draws through the training-map analysis lives in
:mod:`bayes_trainmap.fitting.bayesian` (it needs the analysis code, which ``inference`` must
not import).
"""

from __future__ import annotations

from .bayes_fit import (
    DEFAULT_GUIDE,
    GUIDES,
    BayesianFit,
    auto_guide,
    fit_map,
    fit_svi,
    resolve_device,
)
from .bayes_likelihood import (
    hmm_log_likelihood,
    pad_sequences,
    reference_log_likelihood,
)
from .bayes_model import (
    SITE_NAMES,
    HMMPrior,
    emission_log_prob,
    enumerated_hmm_model,
    hmm_model,
    params_from_sites,
    sites_from_params,
)

__all__ = [
    "BayesianFit",
    "DEFAULT_GUIDE",
    "GUIDES",
    "HMMPrior",
    "SITE_NAMES",
    "auto_guide",
    "emission_log_prob",
    "enumerated_hmm_model",
    "fit_map",
    "fit_svi",
    "hmm_log_likelihood",
    "hmm_model",
    "pad_sequences",
    "params_from_sites",
    "reference_log_likelihood",
    "resolve_device",
    "sites_from_params",
]
