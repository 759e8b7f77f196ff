"""modular_addition: data split, transformer, per-head statistics, variants, smoke training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_stats_oracle import assert_statistics_close, numpy_statistics
from torch import nn

from bayes_trainmap.tasks.datasets.modular import modular_addition_pairs, modular_addition_split
from bayes_trainmap.tasks.ensemble import train_ensemble
from bayes_trainmap.tasks.loop import train_sequential
from bayes_trainmap.tasks.models.transformer import ModularTransformer, transformer_blocks_selection
from bayes_trainmap.tasks.registry import get_task
from bayes_trainmap.tasks.stats import weight_statistics


def test_split_covers_every_problem_once_with_paper_sizes():
    x_tr, y_tr, x_ev, y_ev = modular_addition_split(113, 0.3, seed=5)
    assert len(x_tr) == 3831 and len(x_ev) == 113**2 - 3831  # Table 6
    pairs = torch.cat([x_tr, x_ev])[:, :2]
    assert len({tuple(p) for p in pairs.tolist()}) == 113**2
    for x, y in ((x_tr, y_tr), (x_ev, y_ev)):
        assert torch.equal(y, (x[:, 0] + x[:, 1]) % 113)
        assert (x[:, 2] == 113).all()  # the "=" token
    again = modular_addition_split(113, 0.3, seed=5)
    other = modular_addition_split(113, 0.3, seed=6)
    assert torch.equal(again[0], x_tr) and not torch.equal(other[0], x_tr)


def test_pairs_reject_bad_modulus():
    with pytest.raises(ValueError, match="modulus"):
        modular_addition_pairs(1)


def test_forward_shape_and_causal_attention():
    torch.manual_seed(0)
    model = ModularTransformer(7, d_model=12, n_heads=3, d_head=4, d_mlp=10)
    tokens, _ = modular_addition_pairs(7)
    assert model(tokens[:5]).shape == (5, 7)
    # Causal: the first position's attention output ignores later tokens.
    attention = model.blocks[0].attention
    x = model.embed(tokens[:4]) + model.pos_embed
    y = x.clone()
    y[:, 1:] += torch.randn_like(y[:, 1:])
    assert torch.allclose(attention(x)[:, 0], attention(y)[:, 0], atol=1e-6)
    assert not torch.allclose(attention(x)[:, 2], attention(y)[:, 2], atol=1e-3)


def test_statistics_split_heads_against_numpy():
    torch.manual_seed(1)
    model = ModularTransformer(7, d_model=12, n_heads=3, d_head=4, d_mlp=10, n_layers=2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # non-zero biases, generic matrices
    matrices, biases = [], []
    for block in model.blocks:
        att = block.attention
        for proj in (att.query, att.key, att.value):
            w = proj.weight.detach().numpy()  # (H*dh, d_model)
            matrices += [w[h * 4 : (h + 1) * 4] for h in range(3)]
        w_o = att.output.weight.detach().numpy()  # (d_model, H*dh)
        matrices += [w_o[:, h * 4 : (h + 1) * 4] for h in range(3)]
        matrices += [block.mlp.fc_in.weight.detach().numpy(), block.mlp.fc_out.weight.detach().numpy()]
        biases += [block.mlp.fc_in.bias.detach().numpy(), block.mlp.fc_out.bias.detach().numpy()]
    assert len(matrices) == 2 * (4 * 3 + 2)
    expected = numpy_statistics(matrices, biases)
    assert_statistics_close(weight_statistics(model, transformer_blocks_selection(model)), expected)
    # The same selection applied to a bare state dict gives the same numbers.
    selection = get_task("modular_addition", size="smoke").parameter_selection(model)
    assert_statistics_close(weight_statistics(model.state_dict(), selection), expected)
    # Embeddings and unembedding are not part of the statistics.
    assert not any(("embed" in n) for n in selection.names)
    packed = weight_statistics(model, transformer_blocks_selection(model, split_heads=False))
    assert packed["l2"] != pytest.approx(expected["l2"])


def test_default_config_is_the_papers_and_variants_differ():
    task = get_task("modular_addition")
    c = task.config
    assert (c["p"], c["train_fraction"], c["d_model"], c["n_heads"], c["d_head"], c["d_mlp"]) == (113, 0.3, 128, 4, 32, 512)
    assert (c["optimizer"], c["lr"], c["weight_decay"], c["batch_size"], c["n_layers"]) == ("adamw", 1e-3, 1.0, 2048, 1)
    assert task.threshold == 0.9 and task.data_depends_on_seed
    stable = get_task("modular_addition", variant="stabilized")
    assert stable.config["batch_size"] == 256 and stable.config["layer_norm"] and not c["layer_norm"]
    torch.manual_seed(0)
    plain, normed = task.build_model(), stable.build_model()
    assert not any(isinstance(m, nn.LayerNorm) for m in plain.modules())
    assert sum(isinstance(m, nn.LayerNorm) for m in normed.modules()) == 3
    # 18 matrices (4 heads x Q, K, V, O + MLP in/out), the same in both variants.
    assert sum(e.row_blocks * e.col_blocks for e in transformer_blocks_selection(plain).matrices) == 18
    assert transformer_blocks_selection(normed).names == transformer_blocks_selection(plain).names
    reduced = get_task("modular_addition", variant="reduced")
    assert reduced.config["batch_size"] == reduced.build_data(0).n_train  # full batch
    assert not reduced.config["layer_norm"] and reduced.config["weight_decay"] == 1.0
    std = torch.cat([b.attention.query.weight.detach().flatten() for b in plain.blocks]).std()
    assert float(std) == pytest.approx(128**-0.5, rel=0.05)  # Nanda et al.'s N(0, 1/d_model)


@pytest.mark.parametrize("variant", ["default", "stabilized"])
def test_smoke_training_decreases_loss(variant):
    task = get_task("modular_addition", variant=variant, size="smoke")
    frame = train_sequential(task, seed=0, device="cpu").frame
    assert frame["step"].tolist() == [0, 10, 20, 30, 40]
    assert frame["train_loss"].iloc[-1] < frame["train_loss"].iloc[0]
    assert np.isfinite(frame.drop(columns=["run"]).to_numpy(dtype=float)).all()


def test_model_trains_as_a_vmapped_ensemble_like_sequential():
    task = get_task("modular_addition", size="smoke", steps=20)
    ensemble = train_ensemble(task, [3, 4], device="cpu")
    assert [r.trainer for r in ensemble] == ["ensemble", "ensemble"]
    alone = train_sequential(task, 4, device="cpu").frame
    cols = ["l1", "l2", "spectral", "mean_lambda", "train_loss"]
    np.testing.assert_allclose(ensemble[1].frame[cols].to_numpy(), alone[cols].to_numpy(), rtol=1e-4)
