"""The 14 appendix-B statistics against a direct numpy computation on hand-built models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bayes_trainmap.core.errors import TaskError
from bayes_trainmap.core.schema import STATISTIC_NAMES
from bayes_trainmap.tasks.stats import (
    ParameterSelection,
    SelectedParameter,
    _singular_values,
    default_parameter_selection,
    ensemble_weight_statistics,
    selection_from_state_dict,
    weight_statistics,
)


def numpy_oracle(matrices: list[np.ndarray], biases: list[np.ndarray]) -> dict[str, float]:
    """Appendix B, formula by formula, with numpy only."""
    mats = [np.asarray(m, dtype=np.float64) for m in matrices]
    K = len(mats)
    l1 = np.array([np.sum(np.abs(m)) for m in mats])
    l2 = np.array([np.sqrt(np.sum(m * m)) for m in mats])
    tr = np.array([np.trace(m[: min(m.shape), : min(m.shape)]) for m in mats])
    svals = [np.linalg.svd(m, compute_uv=False) for m in mats]
    top = np.array([s[0] for s in svals])
    w = np.concatenate([m.ravel() for m in mats])
    lam = np.concatenate(svals)
    out = {
        "l1": l1.sum() / K,
        "l2": l2.sum() / K,
        "code_sparsity": np.sum(l1 / l2) / K,
        "mean_w": np.sum(w) / w.size,
        "median_w": np.median(w),
        "var_w": np.sum((w - w.mean()) ** 2) / w.size,
        "trace": tr.sum() / K,
        "spectral": top.sum() / K,
        "computational_sparsity": np.sum(tr / top) / K,
        "mean_lambda": lam.mean(),
        "variance_lambda": np.sum((lam - lam.mean()) ** 2) / lam.size,
    }
    b = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in biases])
    out.update(mean_b=b.mean(), median_b=np.median(b), var_b=np.sum((b - b.mean()) ** 2) / b.size)
    return out


def assert_matches(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert list(actual) == list(STATISTIC_NAMES)
    for name in STATISTIC_NAMES:
        assert actual[name] == pytest.approx(expected[name], rel=1e-6, abs=1e-9), name


def _perturb(model: nn.Module, seed: int) -> nn.Module:
    """Give every parameter a non-zero mean and an odd-looking spread (nontrivial traces)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 + 0.3 * torch.randn(p.shape, generator=gen))
    return model


def np_(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def test_mlp_matches_numpy_and_excludes_embedding_and_norm():
    torch.manual_seed(0)
    model = _perturb(
        nn.Sequential(nn.Embedding(11, 5), nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.LayerNorm(3),
                      nn.Linear(3, 4, bias=False)),
        1,
    )
    lin = [model[1], model[3], model[5]]
    expected = numpy_oracle([np_(layer.weight) for layer in lin], [np_(lin[0].bias), np_(lin[1].bias)])
    assert_matches(weight_statistics(model), expected)
    # a bare state dict through the name-based rule gives the same numbers
    sd = {f"layers.{k}" if not k.startswith("0.") else f"embed.{k[2:]}": v for k, v in model.state_dict().items()}
    assert_matches(weight_statistics(sd), expected)


def test_conv_net_reshapes_kernels_to_out_by_in_kh_kw():
    torch.manual_seed(1)
    model = _perturb(
        nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, (2, 3), bias=False),
                      nn.Flatten(), nn.Linear(6, 5)),
        2,
    )
    c1, c2, fc = model[0], model[3], model[5]
    matrices = [np_(c1.weight).reshape(4, 27), np_(c2.weight).reshape(6, 24), np_(fc.weight)]
    expected = numpy_oracle(matrices, [np_(c1.bias), np_(fc.bias)])
    assert_matches(weight_statistics(model), expected)


def test_transformer_attention_is_split_per_head():
    torch.manual_seed(2)
    d, heads, ff = 8, 2, 12
    model = _perturb(nn.TransformerEncoderLayer(d_model=d, nhead=heads, dim_feedforward=ff), 3)
    attn = model.self_attn
    dh = d // heads
    in_proj = np_(attn.in_proj_weight)  # rows: [Q heads | K heads | V heads]
    per_head = [in_proj[i * dh : (i + 1) * dh] for i in range(3 * heads)]
    out_proj = np_(attn.out_proj.weight)
    per_head += [out_proj[:, h * dh : (h + 1) * dh] for h in range(heads)]
    matrices = per_head + [np_(model.linear1.weight), np_(model.linear2.weight)]
    biases = [np_(attn.in_proj_bias), np_(attn.out_proj.bias), np_(model.linear1.bias), np_(model.linear2.bias)]
    expected = numpy_oracle(matrices, biases)
    assert_matches(weight_statistics(model), expected)
    # 3*heads + heads + 2 matrices, the layer norms excluded
    selection = default_parameter_selection(model)
    assert {e.name for e in selection.entries}.isdisjoint({"norm1.weight", "norm1.bias", "norm2.weight"})


def test_custom_selection_with_column_blocks():
    gen = torch.Generator().manual_seed(3)
    state = {"w_o": torch.randn(6, 8, generator=gen), "b": torch.randn(5, generator=gen)}
    selection = ParameterSelection((SelectedParameter("w_o", "matrix", col_blocks=4), SelectedParameter("b", "bias")))
    w = np_(state["w_o"])
    expected = numpy_oracle([w[:, 2 * h : 2 * h + 2] for h in range(4)], [np_(state["b"])])
    assert_matches(weight_statistics(state, selection), expected)


def test_ensemble_statistics_equal_per_model_statistics():
    models = [_perturb(nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)), s) for s in range(3)]
    stacked = {k: torch.stack([m.state_dict()[k] for m in models]) for k in models[0].state_dict()}
    batched = ensemble_weight_statistics(stacked, default_parameter_selection(models[0]))
    for i, model in enumerate(models):
        single = weight_statistics(model)
        for name in STATISTIC_NAMES:
            assert batched[name][i] == pytest.approx(single[name], rel=1e-12, abs=1e-15)


def test_median_conventions_and_degenerate_cases():
    # even count: numpy takes the mid-point of the two middle values
    state = {"l.weight": torch.tensor([[1.0, 2.0], [3.0, 10.0]]), "l.bias": torch.tensor([4.0, -2.0])}
    stats = weight_statistics(state)
    assert stats["median_w"] == 2.5 and stats["median_b"] == 1.0
    # an all-zero matrix: ratios 0/0 count as 0, never NaN
    zero = weight_statistics({"l.weight": torch.zeros(3, 2)})
    assert zero["code_sparsity"] == 0.0 and zero["computational_sparsity"] == 0.0
    # no biases anywhere: the bias statistics are 0, not NaN
    assert zero["mean_b"] == zero["median_b"] == zero["var_b"] == 0.0
    assert all(np.isfinite(v) for v in zero.values())


def test_bad_selections_are_refused():
    with pytest.raises(TaskError, match="cannot be cut"):
        weight_statistics({"w": torch.ones(5, 4)}, ParameterSelection((SelectedParameter("w", "matrix", 2),)))
    with pytest.raises(TaskError, match="lacks"):
        weight_statistics({"w": torch.ones(4, 4)}, ParameterSelection((SelectedParameter("x", "matrix"),)))
    with pytest.raises(TaskError, match="no weight matrices"):
        selection_from_state_dict({"norm.weight": torch.ones(4), "emb.embed.weight": torch.ones(3, 4)})
    with pytest.raises(TaskError, match="role"):
        SelectedParameter("w", "kernel")
    with pytest.raises(TaskError, match="nn.Module or a state dict"):
        weight_statistics([torch.ones(2, 2)])


def test_singular_values_match_lapack_including_ill_conditioned_and_zero_matrices():
    generator = torch.Generator().manual_seed(3)
    mats = torch.randn(5, 3, 30, 12, dtype=torch.float64, generator=generator)
    mats[0, 0] = mats[0, 0] @ torch.diag(torch.logspace(0, -10, 12, dtype=torch.float64))  # cond 1e10: SVD path
    mats[1, 2] = 0.0
    reference = np.linalg.svd(mats.numpy(), compute_uv=False)
    for batch in (mats, mats.transpose(-2, -1)):  # tall and wide
        values = _singular_values(batch).numpy()
        np.testing.assert_allclose(values, reference, rtol=0, atol=1e-12)
    # the ill-conditioned matrix's smallest singular value is right to its own scale
    assert abs(_singular_values(mats)[0, 0, -1].item() - reference[0, 0, -1]) < 1e-18
