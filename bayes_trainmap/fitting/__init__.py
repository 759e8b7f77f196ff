"""Fitting: model selection by held-out BIC, the Bayesian refinement, and the ``fit``
pipeline that composes them."""
