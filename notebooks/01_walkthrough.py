# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Walkthrough: from recorded training runs to a training map
#
# This notebook follows the method of *Delays, Detours, and Forks in the Road:
# Latent State Models of Training Dynamics* (Hu et al., TMLR 2023) step by step
# with the public API of `bayes_trainmap`:
#
# 1. load the built-in trajectories (40 seeds of a real training task),
# 2. look at the raw weight statistics per run,
# 3. z-score every run and feature (section 2.1 of the paper),
# 4. choose the number of hidden states K by held-out BIC,
# 5. take the maximum-likelihood (Baum-Welch) fit and decode every run with Viterbi,
# 6. draw the training map and read its edge table (section 2.2),
# 7. regress convergence time on state occupancy and find the detour states (section 2.3).
#
# `bayes_trainmap.fit(ts)` (or `python -m bayes_trainmap fit`) runs steps 3-7 in one call;
# here they are spelled out so that every intermediate object can be inspected.
#
# **Budget.** The notebook runs in a minute or two on a small CPU: 5 Baum-Welch restarts
# per K (the paper's setting), K from 1 to 8. With `BTM_NOTEBOOK_FAST=1` (the test suite)
# it uses 1 restart and K from 2 to 6.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from _setup import setup_notebook
from IPython.display import display

from bayes_trainmap.analysis import AnalysisOptions, analyze
from bayes_trainmap.data.fitted import FittedRuns
from bayes_trainmap.analysis.convergence import threshold_for_task
from bayes_trainmap.data import (
    available_demos,
    demo_trajectories,
    split_runs,
    zscore_per_run,
)
from bayes_trainmap.fitting.selection import select_n_states
from bayes_trainmap.report import plots

# BTM_NOTEBOOK_FAST=1 (set by tests/test_notebooks.py) shrinks every budget below.
FAST = setup_notebook()
RESTARTS = 1 if FAST else 5
STATES = range(2, 7) if FAST else range(1, 9)
SEED = 0

# %% [markdown]
# ## 1. The trajectories
#
# A trajectory set is long-format data: one row per (run, checkpoint) with the 14 weight
# statistics of the paper's appendix B and outcome columns. The shipped sets were recorded
# with this package's own training loop (`python -m bayes_trainmap collect`); the
# `sparse_parities` set is the paper's sparse-parity task (parity of 3 of 40 bits,
# one-hidden-layer MLP, SGD), 40 seeds.

# %%
print("available demo sets:", available_demos())
ts = demo_trajectories("sparse_parities")
task = ts.metadata.get("task")
print(f"task={task!r}: {ts.n_runs} runs, {ts.lengths.min()}-{ts.lengths.max()} checkpoints per run")
print("statistics:", ts.feature_columns)
print("outcomes:  ", ts.outcome_columns)
display(ts.frame.head())

# %% [markdown]
# ## 2. Raw statistics per run
#
# Each thin line is one random seed. The runs share the same data and architecture and
# differ only in initialisation and batch order, yet they leave the chance-level plateau of
# eval accuracy at very different times (bottom right), and some not at all within the
# recorded steps: that spread of convergence times is what the training map explains.

# %%
shown = ["l2", "spectral", "code_sparsity", "var_b", "mean_lambda"]
frame = ts.frame
fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True)
for ax, column in zip(axes.ravel(), shown + ["eval_accuracy"]):
    for _, group in frame.groupby("run", sort=False):
        ax.plot(group["step"], group[column], lw=0.6, alpha=0.6)
    ax.set_title(column, fontsize=10)
for ax in axes[-1]:
    ax.set_xlabel("step")
fig.tight_layout()

# %% [markdown]
# ## 3. z-scoring per run
#
# Following section 2.1, every feature of every run is standardised with the mean and
# standard deviation of its first min(T, 1000) checkpoints, so the HMM models the *shape*
# of each trajectory rather than its scale. A feature that is constant within a run is set
# to 0 there and reported (never divided by zero).

# %%
X, lengths = ts.feature_matrix()
features = ts.resolve_features()
Z, zinfo = zscore_per_run(X, lengths, window=1000, feature_names=features, run_ids=ts.run_ids)
print("Z:", Z.shape, " features constant in some run:", zinfo.constant_features or "none")

ends = np.cumsum(lengths)
fig, ax = plt.subplots(figsize=(8, 3))
for run_id, start, stop in list(zip(ts.run_ids, ends - lengths, ends))[:4]:
    ax.plot(ts.steps()[start:stop], Z[start:stop, features.index("l2")], lw=1, label=run_id)
ax.set(xlabel="step", ylabel="z-scored l2", title="z-scored L2 norm, first four runs")
ax.legend(fontsize=8);

# %% [markdown]
# ## 4. Choosing K by held-out BIC
#
# The runs (not the checkpoints) are split 80/20. For each K, Baum-Welch is run from
# several k-means initialisations on the training runs; the restart with the best
# *training* log-likelihood is scored on the held-out runs with
# `BIC = -2 log p(held-out) + p ln(n_val)`, and the smallest BIC wins.

# %%
train_ids, val_ids = split_runs(ts.run_ids, val_fraction=0.2, seed=SEED)
split = np.array(["val" if r in set(val_ids) else "train" for r in ts.run_ids])
rows = np.repeat(split == "train", lengths)
selection = select_n_states(
    Z[rows], lengths[split == "train"], Z[~rows], lengths[split == "val"],
    states=STATES, n_restarts=RESTARTS, random_state=SEED, progress=False,
    feature_names=features,
)
K = selection.best_n_states
print(f"{len(train_ids)} training runs, {len(val_ids)} held-out runs; chosen K = {K}")
display(selection.curve[["n_states", "train_log_likelihood", "val_log_likelihood", "n_parameters", "bic"]])

# %%
curve = selection.curve.rename(columns={"n_states": "n_components"})
plots.plot_selection_curves({"HMM": curve}, chosen={"HMM": K}, ax=plt.subplots(figsize=(5, 3))[1]);

# %% [markdown]
# ## 5. The maximum-likelihood fit and Viterbi paths
#
# `selection.best_model` is a fitted `inference.baum_welch.GaussianHMM`; its `params_`
# (an `HMMParams`: start probabilities, transition matrix, means and full covariances in
# z-units) is what every later step uses. All runs, training and held-out, are decoded
# with Viterbi. The heat map shows each state's mean z-scored statistic.

# %%
model = selection.best_model
params = model.params_
paths = model.predict(Z, lengths)
print(f"converged={model.converged_} after {model.n_iter_} EM iterations; "
      f"train log-likelihood {model.log_likelihood_:.1f}")

fig, ax = plt.subplots(figsize=(10, 0.45 * K + 1.2))
im = ax.imshow(params.means, cmap="RdBu_r", vmin=-3, vmax=3, aspect="auto")
ax.set(yticks=range(K), yticklabels=[f"state {k}" for k in range(K)],
       xticks=range(len(features)))
ax.set_xticklabels(features, rotation=45, ha="right", fontsize=8)
fig.colorbar(im, ax=ax, label="mean (z-units)");

# %% [markdown]
# ## 6. The training map
#
# `analyze` turns the fit into everything the paper reads off it. Convergence is the first
# checkpoint where `eval_accuracy` crosses the task's threshold (0.9 for sparse parities);
# runs that never cross are listed and left out of the regression.
#
# In the map, nodes are states (area ∝ occupancy), and an edge `j -> k` is kept only if some
# run's Viterbi path actually takes it. Each edge is labelled with the three statistics
# whose filtered state posterior is most sensitive at the moment of the transition
# (appendix A), with the direction and size of the change in state means (the paper's
# "L2 ↓ 0.59"), how many runs take it, and the mean ± SD convergence step of those runs.

# %%
threshold = threshold_for_task(task) if task else 0.9
outcomes = {name: ts.outcome(name) for name in ts.outcome_columns}
runs = FittedRuns.from_arrays(
    Z, lengths, ts.run_ids, ts.steps(), outcomes, features=features, split=split, paths=paths
)
options = AnalysisOptions(
    outcome="eval_accuracy", threshold=threshold,
    run_baselines=False,  # the k-means / HMM-1 baselines are in 03_paper_tables
)
analysis = analyze(params, runs, options)
conv = analysis.convergence
print(f"threshold {threshold}: {conv.steps.notna().sum()} of {ts.n_runs} runs converge; "
      f"never: {', '.join(conv.never_converged) or 'none'}")
fig, ax = plt.subplots(figsize=(12, 6))
plots.plot_training_map(analysis.training_map, detour_states=analysis.detour_states, ax=ax);

# %% [markdown]
# ### The edge and state tables
#
# One row per kept transition: `trans_prob` is the fitted transition probability,
# `n_runs` the number of runs whose path uses the edge, `conv_mean ± conv_sd` the
# convergence step of those runs (converged ones only), `label` the edge label drawn
# on the map. Edges leaving one state towards different targets are the *forks*.

# %%
tmap = analysis.training_map
display(tmap.edges[["source", "target", "trans_prob", "n_runs", "conv_mean", "conv_sd", "conv_n", "label"]])

# %%
display(tmap.states[["state", "occupancy", "n_runs", "mean_dwell", "is_initial", "is_final",
                     "n_runs_start", "n_runs_end", "top_features"]])

# %% [markdown]
# ## 7. Convergence regression and detours
#
# Section 2.3: each run is summarised by its occupancy fractions P̂(s = k) (a unigram model of
# its state sequence); the convergence step, standardised across runs, is regressed on them.
# A coefficient is in SD units of convergence time per unit of occupancy. A state is a
# **detour** if its coefficient is positive *and* some converged runs never visit it:
# visiting it delays convergence, and it can be avoided. The paper's Table 1 row is
# `analysis.table1`.

# %%
t1 = analysis.table1
print(f"R² = {t1['r_squared']:.3f}, F-test p = {t1['p_value']:.2g}, "
      f"dissimilarity = {t1['dissimilarity']:.3f}, forking = {t1['forking']}")
print("detour states:", analysis.detour_states or "none")
if analysis.regression.warning:
    print("note:", analysis.regression.warning)
display(analysis.regression.table())

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
plots.plot_regression_coefficients(analysis.regression.table(), ax=axes[0])
plots.plot_convergence_histogram(conv.steps, n_never=len(conv.never_converged),
                                 threshold=threshold, outcome="eval_accuracy", ax=axes[1])
fig.tight_layout()

# %% [markdown]
# Finally, each run's Viterbi path, sorted by convergence step (black ticks). Runs that
# converge late should spend their time in the states with positive coefficients; runs
# that never converge sit at the bottom.
#
# The regression only sees converged runs, so a state that *only* never-converging runs
# reach gets no coefficient at all (NaN above); the next cell lists such states -- the
# map's dead ends, which are the clearest sign of a fork in the road.

# %%
decoded = pd.DataFrame({"run": np.repeat(ts.run_ids, lengths), "step": ts.steps(), "state": paths})
fig, ax = plt.subplots(figsize=(11, 7))
plots.plot_state_timeline(decoded, conv.steps, K, detour_states=analysis.detour_states, ax=ax);

# %%
occ = analysis.occupancy  # runs x states occupancy fractions
converged = conv.steps.reindex(occ.index).notna()
visits = pd.DataFrame({
    "converged runs visiting": (occ[converged] > 0).sum(),
    "never-converged runs visiting": (occ[~converged] > 0).sum(),
    "coefficient": analysis.regression.coefficients,
})
dead_ends = visits.index[(visits["converged runs visiting"] == 0) & (visits["never-converged runs visiting"] > 0)]
print("states reached only by runs that never converge:", list(dead_ends) or "none")
display(visits)

# %% [markdown]
# ## Going further
#
# * The same analysis in one call: `from bayes_trainmap.fitting.pipeline import fit; result = fit(ts)`
#   (`result.analysis` is the `Analysis` above; `result.save("fits/x")`
#   from the same module writes the HTML/Markdown report).
# * For a real analysis keep the paper's settings (5 restarts, K in 1..8) and more runs if
#   you have them; the held-out BIC needs enough held-out runs to be stable.
# * `02_bayesian_diagnostics` puts credible intervals on the map and the regression;
#   `03_paper_tables` rebuilds the paper's tables for every shipped set.
