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
# # The paper's tables, rebuilt from the shipped trajectories
#
# For every trajectory set shipped in `bayes_trainmap/demo_data/`, this notebook fits the
# HMM exactly as the paper does (z-score per run, 80/20 run split, K in 1..8 by held-out BIC,
# 5 Baum-Welch restarts, Viterbi) and rebuilds
#
# * **Table 1**: R² and F-test p-value of the convergence regression, trajectory
#   dissimilarity (equation 1), forking;
# * **Table 2**: the regression coefficients, now with 95% confidence intervals, detour
#   states marked;
# * **Table 4**: the k-means, HMM-1 (L2 norm only) and HMM baselines: chosen number of
#   components and BIC,
#
# next to the paper's numbers (Hu et al., TMLR 2023, Tables 1, 2 and 4). The shipped sets
# are `sparse_parities` (the paper's task, recorded with this package's training loop),
# `digits` (scikit-learn 8x8 digits, a small stand-in for the paper's MNIST row) and
# `modular_addition` (the task's reduced variant, p = 23, far smaller than the paper's); the
# last two are *not* the paper's settings, so their comparison is only indicative. State
# numbers are arbitrary labels in every fit, so coefficients are compared as sets, not state
# by state.
#
# **Budget.** 5 restarts, K in 1..8 for the HMM and 1..16 components for the baselines
# (the paper's baselines went up to 16). `BTM_NOTEBOOK_FAST=1` uses 1 restart and K in
# 1..8 for all three model classes.

# %%
import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from _setup import setup_notebook
from IPython.display import display

from bayes_trainmap.analysis import analyze
from bayes_trainmap.analysis.baselines import baselines_table, hmm_selection_from_curve
from bayes_trainmap.analysis.paper_reference import (
    ROW_NAMES,
    paper_reference,
    paper_setting_of_demo,
    table4_key,
)
from bayes_trainmap.data import SIMULATED_DEMO, available_demos, demo_trajectories
from bayes_trainmap.fitting.pipeline import fit
from bayes_trainmap.report import plots

# BTM_NOTEBOOK_FAST=1 (set by tests/test_notebooks.py) shrinks every budget below.
FAST = setup_notebook()
RESTARTS = 1 if FAST else 5
HMM_STATES = "1-8"
BASELINE_RANGE = list(range(1, 9)) if FAST else list(range(1, 17))
SEED = 0

# %% [markdown]
# ## The paper's numbers
#
# Copied from the paper (Table 1, Table 2 and Table 4) into
# `bayes_trainmap.analysis.paper_reference`, which `scripts/reproduce_paper.py` reads too.
# The paper has no digits row; its MNIST row is shown for the `digits` set as the nearest
# analogue.

# %%
sets = [name for name in available_demos() if name != SIMULATED_DEMO]
PAPER = {name: paper_reference(setting) for name in sets if (setting := paper_setting_of_demo(name))}


def paper_label(name):
    """The paper's row for a shipped set, marked when the set only stands in for it."""
    setting = paper_setting_of_demo(name)
    if setting is None:
        return "-"
    return ROW_NAMES[setting] if setting == name else f"{ROW_NAMES[setting]} (paper) ~ {name}"


def paper_detours(name):
    """The detour states the paper names (none for its linear maps, "-" without a paper row)."""
    if name not in PAPER:
        return "-"
    table2 = PAPER[name]["table2"]
    return table2["detours"] if table2 else []


display(pd.DataFrame({paper_label(name): paper["table1"] for name, paper in PAPER.items()}).T)

# %% [markdown]
# ## Fit every shipped set
#
# `fit` runs the selection and the decoding; the analysis is then run with the wider
# component range for the baselines (k-means and HMM-1 are cheap; the HMM itself keeps K in
# 1..8).

# %%
def analyse(result, **options):
    """`analyze` a fit with its own analysis options, some of them replaced by ``options``."""
    recorded = result.prepared.analysis_options(result.config)
    return analyze(result.params, result.runs, dataclasses.replace(recorded, **options))


results = {}
for name in sets:
    ts = demo_trajectories(name)
    result = fit(ts, mode="mle", states=HMM_STATES, n_restarts=RESTARTS, random_state=SEED, progress=False, analyze=False)
    result.analysis = analyse(result, states_range=BASELINE_RANGE, random_state=SEED)
    results[name] = result
    conv = result.analysis.convergence
    print(f"{name}: K = {result.n_states}, threshold {result.resolved['threshold']}, "
          f"{conv.steps.notna().sum()}/{ts.n_runs} runs converge")

# %% [markdown]
# ## Table 1: predictability of convergence time
#
# Ours next to the paper's. `p-value` is the F-test of the occupancy regression against the
# intercept-only model.

# %%
rows = []
for name, result in results.items():
    t1 = result.analysis.table1
    paper = PAPER[name]["table1"] if name in PAPER else {}
    rows.append({
        "dataset": name, "K": result.n_states,
        "R²": t1["r_squared"], "p-value": t1["p_value"],
        "dissimilarity": t1["dissimilarity"], "forking": t1["forking"],
        "paper row": paper_label(name), "paper R²": paper.get("r_squared"),
        "paper p": paper.get("p_value"), "paper dissimilarity": paper.get("dissimilarity"),
        "paper forking": paper.get("forking"),
    })
table1 = pd.DataFrame(rows).set_index("dataset")
display(table1)

# %% [markdown]
# ## Table 2: regression coefficients with intervals
#
# Coefficients in SD units of convergence step per unit of occupancy, with 95% confidence
# intervals from the OLS fit (`02_bayesian_diagnostics` gives Bayesian intervals that
# also carry the HMM's uncertainty). The occupancies of a run sum to 1 and the regression
# has no separate intercept, so when every run visits every state the coefficients are
# nearly collinear and their intervals are wide; R² and the F-test are unaffected.
# `detour` marks states with a positive coefficient that some converged runs never visit.
# The paper's coefficients (Table 2) are listed beside ours sorted by value, since state
# labels are not comparable across fits.

# %%
tables2 = {}
for name, result in results.items():
    table = result.analysis.regression.table()[
        ["state", "coefficient", "ci_low", "ci_high", "p_value", "visited_by", "detour"]]
    tables2[name] = table
    print(f"--- {name}: detour states {result.analysis.detour_states or 'none'}"
          f" (paper: {paper_detours(name)})")
    display(table)
compare = {name: pd.Series(np.sort(t["coefficient"].dropna().to_numpy())[::-1]) for name, t in tables2.items()}
compare.update({
    f"paper {name}": pd.Series(sorted(paper["table2"]["coefficients"], reverse=True))
    for name, paper in PAPER.items() if paper["table2"]
})
print("coefficients sorted from largest to smallest:")
display(pd.DataFrame(compare))

# %% [markdown]
# ### Runs that never converge
#
# By default the regression leaves out runs that never cross the threshold, so a state that
# only those runs reach gets no coefficient and cannot be a detour. Censoring them at their
# last step instead (`include_unconverged=True`; their true convergence step is *at least*
# that) puts such states back into the regression. This is a lower bound on how much they
# delay convergence, not an estimate.

# %%
for name, result in results.items():
    if not result.analysis.convergence.never_converged:
        print(f"{name}: every run converges; nothing to censor")
        continue
    censored = analyse(result, include_unconverged=True, run_baselines=False)
    print(f"{name}: {len(censored.censored_runs)} runs censored at their last step; "
          f"R² = {censored.regression.r_squared:.3f}, detour states {censored.detour_states or 'none'}")
    display(censored.regression.table()[["state", "coefficient", "ci_low", "ci_high", "visited_by", "detour"]])

# %%
fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 3.5), squeeze=False)
for ax, (name, result) in zip(axes[0], results.items()):
    plots.plot_regression_coefficients(result.analysis.regression.table(), ax=ax)
    ax.set_title(f"{name}: R² = {result.analysis.regression.r_squared:.2f}", fontsize=10)
fig.tight_layout()

# %% [markdown]
# ## Table 4: baselines
#
# Chosen number of components and held-out BIC for k-means, HMM-1 (an HMM on the L2 norm
# alone) and the full HMM. As the paper notes, BICs are comparable only within a model
# class; what carries over is the pattern that the baselines need more components than the
# HMM.

# %%
def table4_selections(result):
    """The k-means, HMM-1 and HMM selections of one fit: the rows of its Table 4."""
    return [*result.analysis.baselines, hmm_selection_from_curve(result.selection.curve)]


rows = []
for name, result in results.items():
    paper = PAPER[name]["table4"] if name in PAPER else {}
    for _, row in baselines_table(table4_selections(result)).iterrows():
        components, bic = paper.get(table4_key(row["model"]), (None, None))
        rows.append({"dataset": name, "model": row["model"], "components": row["components"],
                     "BIC": row["bic"], "paper components": components, "paper BIC": bic})
table4 = pd.DataFrame(rows).set_index(["dataset", "model"])
display(table4)

# %%
for name, result in results.items():
    selections = table4_selections(result)
    curves = {s.model: s.curve for s in selections}
    chosen = {s.model: s.best_n_components for s in selections}
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3))
    plots.plot_selection_curves(curves, chosen, ax=axes)
    fig.suptitle(name, fontsize=11)
    fig.tight_layout()

# %% [markdown]
# ## The training maps
#
# The maps behind the rows above: forks and detour states (red rings) for a set whose
# runs take different routes, a near-linear chain for one whose runs all follow the
# same path.

# %%
for name, result in results.items():
    fig, ax = plt.subplots(figsize=(12, 5.5))
    plots.plot_training_map(result.analysis.training_map,
                            detour_states=result.analysis.detour_states, ax=ax)
    ax.set_title(name)

# %%
for name, result in results.items():
    conv = result.analysis.convergence
    fig, ax = plt.subplots(figsize=(11, 6))
    plots.plot_state_timeline(result.runs.decoded_frame(), conv.steps, result.n_states,
                              detour_states=result.analysis.detour_states, ax=ax)
    ax.set_title(f"{name}: Viterbi states per run (sorted by convergence step)", fontsize=10)

# %% [markdown]
# ## Reading the comparison
#
# What a full run (5 restarts, seed 0) shows (the fast test run uses fewer restarts and
# may differ):
#
# * **Sparse parities** reproduces the paper's qualitative result: a forking map on which
#   occupancy predicts convergence time well (R² 0.93, p ≈ 1e-15; paper 0.961, p < 0.001).
#   Our runs differ from the paper's in one respect that shapes the rest: 9 of 40 runs never
#   reach 0.9 eval accuracy within 25,000 steps, and all of them end in a state (4) that no
#   converging run visits. With those runs left out (the paper's rule) no state passes the
#   detour test (paper: state 0); censoring them at their last step makes that dead-end
#   state, and the states on the generalising path that the stuck runs skip, detours
#   (R² 0.98). The split between generalising and stuck runs also shows in the trajectory
#   dissimilarity, three times the paper's (0.56 vs 0.18).
# * **digits** behaves like the paper's MNIST row: a linear map that every run follows
#   through every state, occupancy does not predict convergence (R² 0.04, not significant;
#   paper 0.049), and the dissimilarity is low (0.067; paper 0.063).
# * **modular_addition** (the reduced variant, not the paper's size) does *not* reproduce the
#   paper's forking map: its runs share one linear route (forking False, dissimilarity 0.044;
#   paper 0.496), and occupancy explains less of the convergence time (R² 0.41, p ≈ 7e-4;
#   paper 0.977). 4 of 40 runs never reach 0.9; censoring them changes little (R² 0.44, no
#   detour); `docs/reproduction.md` has the same fit from `scripts/reproduce_paper.py`.
# * **Table 4**: as in the paper, k-means takes (nearly) the largest number of clusters
#   allowed on digits and sparse parities (16 and 15 of 16), HMM-1 needs more components
#   (13 and 9) than the full HMM (5 on both sets; paper 6); on modular addition the order is
#   the same (k-means 11, HMM-1 9, HMM 4). The BIC values themselves are not comparable
#   with the paper's: they scale with the number of held-out checkpoints, which differs
#   between our runs and theirs.
#
# For a closer replication, record the runs for longer (so that every seed converges, as
# in the paper) and keep 5 or more restarts.
