"""Direct numpy computation of the 14 appendix-B statistics (test oracle).

Independent of :mod:`tasks.stats`: takes explicit lists of matrices and biases
(already split per head / reshaped by the test) and applies the formulas one by one.
"""

from __future__ import annotations

import numpy as np


def numpy_statistics(matrices: list[np.ndarray], biases: list[np.ndarray]) -> dict[str, float]:
    mats = [np.asarray(m, dtype=np.float64) for m in matrices]
    l1 = [np.abs(m).sum() for m in mats]
    l2 = [np.sqrt((m**2).sum()) for m in mats]
    traces = [sum(m[i, i] for i in range(min(m.shape))) for m in mats]
    svs = [np.linalg.svd(m, compute_uv=False) for m in mats]
    spectral = [s.max() for s in svs]
    w = np.concatenate([m.ravel() for m in mats])
    sigma = np.concatenate(svs)
    out = {
        "l1": np.mean(l1),
        "l2": np.mean(l2),
        "code_sparsity": np.mean([a / b for a, b in zip(l1, l2)]),
        "mean_w": w.mean(),
        "median_w": np.median(w),
        "var_w": ((w - w.mean()) ** 2).mean(),
        "trace": np.mean(traces),
        "spectral": np.mean(spectral),
        "computational_sparsity": np.mean([t / s for t, s in zip(traces, spectral)]),
        "mean_lambda": sigma.mean(),
        "variance_lambda": ((sigma - sigma.mean()) ** 2).mean(),
    }
    if biases:
        b = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in biases])
        out.update(mean_b=b.mean(), median_b=np.median(b), var_b=((b - b.mean()) ** 2).mean())
    else:
        out.update(mean_b=0.0, median_b=0.0, var_b=0.0)
    return {k: float(v) for k, v in out.items()}


def assert_statistics_close(actual: dict[str, float], expected: dict[str, float], rtol=1e-6, atol=1e-9) -> None:
    assert set(actual) == set(expected)
    for name, value in expected.items():
        assert np.isclose(actual[name], value, rtol=rtol, atol=atol), (name, actual[name], value)
