"""The BIC sweep and the seed collection through the Ray executor equal the local executor.

A local 2-CPU Ray instance is started once for this module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import ray

from bayes_trainmap.executors import LocalExecutor
from bayes_trainmap.executors.ray_cluster import RayExecutor
from bayes_trainmap.selection import select_n_states
from bayes_trainmap.simulate import simulate_training_runs


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def sweep_data():
    simulated = simulate_training_runs(
        n_runs=10, n_checkpoints=80, path_dwell=(15, 20, 15), delay=10, n_features=3, random_state=4
    )
    X, lengths = simulated.trajectories.feature_matrix()
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n_train = 8  # the first 8 runs fit, the last 2 score
    return (
        X[: offsets[n_train]],
        lengths[:n_train],
        X[offsets[n_train] :],
        lengths[n_train:],
    )


def test_bic_sweep_on_ray_equals_the_local_sweep(ray_cluster, sweep_data):
    kwargs = dict(states=range(1, 5), n_restarts=2, random_state=3, progress=False, n_iter=30)
    local = select_n_states(*sweep_data, executor=LocalExecutor(), **kwargs)
    distributed = select_n_states(*sweep_data, executor=RayExecutor(), **kwargs)
    assert distributed.best_n_states == local.best_n_states
    assert list(distributed.table["restart"]) == list(local.table["restart"])
    # Same seeds and the same deterministic kernels in another process: the same fits.
    pd.testing.assert_frame_equal(distributed.table, local.table, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(distributed.curve, local.curve, check_exact=False, rtol=1e-9)
    np.testing.assert_allclose(
        distributed.best_model.params_.means, local.best_model.params_.means, rtol=1e-9
    )
    # Distinct restarts really differ (the comparison above is not vacuous).
    assert local.table["seed"].nunique() == len(local.table)
