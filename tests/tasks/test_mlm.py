"""mlm: corpus and tokenizer, BERT masking, the small BERT, per-head statistics, smoke
training, and the Hugging Face checkpoint importer on a tiny local BertForMaskedLM."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from model_stats_oracle import assert_statistics_close, numpy_statistics

from bayes_trainmap.data import load_trajectories
from bayes_trainmap.core.errors import TaskError
from bayes_trainmap.core.schema import STATISTIC_NAMES
from bayes_trainmap.tasks.datasets.text import CharTokenizer, chunk_sequences, mask_tokens, stdlib_docstring_corpus
from bayes_trainmap.tasks.hf_checkpoints import (
    MissingExtraError,
    bert_encoder_selection,
    step_from_checkpoint_name,
    trajectory_from_hf_checkpoints,
)
from bayes_trainmap.tasks.loop import train_sequential
from bayes_trainmap.tasks.models.bert import MaskedLanguageModel
from bayes_trainmap.tasks.models.transformer import transformer_blocks_selection
from bayes_trainmap.tasks.registry import get_task
from bayes_trainmap.tasks.stats import weight_statistics


def test_corpus_is_deterministic_printable_ascii():
    text = stdlib_docstring_corpus(("json", "heapq"))
    assert text == stdlib_docstring_corpus(("json", "heapq"))
    assert len(text) > 2000 and "  " not in text and all(" " <= ch <= "~" for ch in text)
    import json

    assert json.__doc__.split()[0] in text
    with pytest.raises(TaskError, match="no_such_module"):
        stdlib_docstring_corpus(("no_such_module",))


def test_char_tokenizer_round_trip_and_chunks():
    tok = CharTokenizer()
    assert tok.vocab_size == 3 + 95
    ids = tok.encode("Hello, ~world!\u00e9")
    assert ids[-1] == tok.UNK and tok.decode(ids[:-1]) == "Hello, ~world!"
    assert chunk_sequences(torch.arange(10), 4).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(TaskError):
        chunk_sequences(torch.arange(3), 4)


def test_bert_masking_proportions():
    tokens = torch.randint(3, 98, (400, 250))
    inputs, targets = mask_tokens(tokens, torch.Generator().manual_seed(0), vocab_size=98)
    chosen = targets != -100
    assert abs(chosen.float().mean().item() - 0.15) < 0.005
    assert torch.equal(targets[chosen], tokens[chosen]) and torch.equal(inputs[~chosen], tokens[~chosen])
    n = chosen.sum().item()
    masked = (inputs[chosen] == CharTokenizer.MASK).sum().item() / n
    kept = (inputs[chosen] == tokens[chosen]).sum().item() / n
    assert abs(masked - 0.8) < 0.01
    assert abs(kept - (0.1 + 0.1 / 95)) < 0.01  # 10% kept, plus random draws that hit the same token
    assert inputs.min() >= 1 and (inputs[chosen] != CharTokenizer.MASK).any()


def test_model_shapes_and_tied_decoder():
    torch.manual_seed(0)
    model = MaskedLanguageModel(98, 16, d_model=8, n_layers=2, n_heads=2, d_mlp=12)
    tokens = torch.randint(0, 98, (3, 10))
    logits = model(tokens)
    assert logits.shape == (3, 10, 98)
    logits.sum().backward()
    assert model.token_embed.weight.grad is not None
    assert not any(n.startswith("decoder") and p.ndim == 2 for n, p in model.named_parameters())


def test_statistics_split_heads_against_numpy():
    torch.manual_seed(3)
    model = MaskedLanguageModel(98, 16, d_model=8, n_layers=2, n_heads=2, d_mlp=12)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    matrices, biases = [], []
    for block in model.blocks:
        att = block.attention
        for proj in (att.query, att.key, att.value):
            w = proj.weight.detach().numpy()
            matrices += [w[:4], w[4:]]
            biases.append(proj.bias.detach().numpy())
        w_o = att.output.weight.detach().numpy()
        matrices += [w_o[:, :4], w_o[:, 4:]]
        biases.append(att.output.bias.detach().numpy())
        matrices += [block.mlp.fc_in.weight.detach().numpy(), block.mlp.fc_out.weight.detach().numpy()]
        biases += [block.mlp.fc_in.bias.detach().numpy(), block.mlp.fc_out.bias.detach().numpy()]
    actual = weight_statistics(model, transformer_blocks_selection(model))
    assert_statistics_close(actual, numpy_statistics(matrices, biases))


def test_task_config_and_smoke_training_decreases_loss():
    task = get_task("mlm", size="smoke")
    assert len(task.config["corpus_fingerprint"]) == 16 and task.config["mask_prob"] == 0.15
    default = get_task("mlm").config
    assert (default["n_layers"], default["d_model"], default["n_heads"]) == (2, 64, 2)
    frame = train_sequential(task, seed=0, device="cpu").frame
    assert frame["eval_loss"].iloc[-1] < frame["eval_loss"].iloc[0] - 0.5
    assert frame["eval_accuracy"].iloc[-1] > frame["eval_accuracy"].iloc[0]
    with pytest.raises(TaskError, match="fingerprint"):
        get_task("mlm", size="smoke", corpus_fingerprint="0" * 16)


def test_evaluation_masks_are_fixed_and_training_masks_vary():
    task = get_task("mlm", size="smoke")
    data = task.build_data(0)
    x, y = data.eval_inputs[:8], data.eval_targets[:8]
    a, b = task.transform_batch(x, y, None), task.transform_batch(x, y, None)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    gen = torch.Generator().manual_seed(1)
    c, d = task.transform_batch(x, y, gen), task.transform_batch(x, y, gen)
    assert not torch.equal(c[1], d[1])


def test_step_names():
    assert step_from_checkpoint_name("google/multiberts-seed_0-step_20k") == 20000
    assert step_from_checkpoint_name("/tmp/run/step_150/") == 150
    assert step_from_checkpoint_name("out/checkpoint-900") == 900
    with pytest.raises(TaskError, match="steps="):
        step_from_checkpoint_name("final_model")


@pytest.fixture(scope="module")
def bert_checkpoints(tmp_path_factory):
    from transformers import BertConfig, BertForMaskedLM  # in the test extra

    config = BertConfig(vocab_size=40, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                        intermediate_size=20, max_position_embeddings=16)
    torch.manual_seed(0)
    model = BertForMaskedLM(config)
    root = tmp_path_factory.mktemp("multiberts")
    paths, states = [], []
    for step in ("20k", "0k", "10k"):  # deliberately out of order
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        path = root / f"tiny-bert-seed_4-step_{step}"
        model.save_pretrained(path)
        paths.append(path)
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return paths, states


def _oracle_for_hf_state(state, n_layers=2, n_heads=3, d_head=4):
    matrices, biases = [], []
    for i in range(n_layers):
        p = f"bert.encoder.layer.{i}."
        for proj in ("query", "key", "value"):
            w = state[p + f"attention.self.{proj}.weight"].numpy()
            matrices += [w[h * d_head : (h + 1) * d_head] for h in range(n_heads)]
            biases.append(state[p + f"attention.self.{proj}.bias"].numpy())
        w_o = state[p + "attention.output.dense.weight"].numpy()
        matrices += [w_o[:, h * d_head : (h + 1) * d_head] for h in range(n_heads)]
        biases.append(state[p + "attention.output.dense.bias"].numpy())
        for name in ("intermediate.dense", "output.dense"):
            matrices.append(state[p + name + ".weight"].numpy())
            biases.append(state[p + name + ".bias"].numpy())
    return numpy_statistics(matrices, biases)


def test_hf_importer_on_tiny_local_bert(bert_checkpoints, tmp_path):
    paths, states = bert_checkpoints
    frame = trajectory_from_hf_checkpoints(paths, run="multibert-4", seed=4, local_files_only=True, out=tmp_path,
                                           outcome_fn=lambda model, step: {"n_params": sum(p.numel() for p in model.parameters())})
    assert frame["step"].tolist() == [0, 10000, 20000]
    assert list(frame.columns[:3]) == ["run", "seed", "step"] and set(STATISTIC_NAMES) <= set(frame.columns)
    assert (frame["run"] == "multibert-4").all() and (frame["seed"] == 4).all() and "n_params" in frame
    by_step = {20000: states[0], 0: states[1], 10000: states[2]}
    for _, row in frame.iterrows():
        expected = _oracle_for_hf_state(by_step[row["step"]])
        assert_statistics_close({k: row[k] for k in STATISTIC_NAMES}, expected)
    # The selector drops embeddings, layer norms and the MLM head.
    selection = bert_encoder_selection(states[0], n_heads=3)
    assert not any(("embeddings" in n) or ("LayerNorm" in n) or n.startswith("cls.") for n in selection.names)
    # The written run reads back as a trajectory set.
    loaded = load_trajectories(tmp_path)
    assert loaded.run_ids == ["multibert-4"] and loaded.steps().tolist() == [0, 10000, 20000]
    assert np.allclose(loaded.feature_matrix(list(STATISTIC_NAMES))[0], frame[list(STATISTIC_NAMES)].to_numpy())
    # With the MLM head loaded, the encoder statistics are unchanged.
    explicit = trajectory_from_hf_checkpoints(paths[:2], steps=[5, 3], local_files_only=True,
                                              auto_class="AutoModelForMaskedLM")
    assert explicit["step"].tolist() == [3, 5]
    assert np.allclose(explicit[list(STATISTIC_NAMES)].to_numpy(),
                       frame.set_index("step").loc[[0, 20000], list(STATISTIC_NAMES)].to_numpy())
    with pytest.raises(TaskError, match="distinct"):
        trajectory_from_hf_checkpoints(paths[:2], steps=[1, 1])


def test_hf_importer_names_the_extra_when_transformers_is_missing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(MissingExtraError, match=r"bayes_trainmap\[transformers\]") as info:
        trajectory_from_hf_checkpoints([tmp_path / "step_1"])
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)


def test_selection_rejects_non_bert_state_dicts():
    with pytest.raises(TaskError, match="encoder"):
        bert_encoder_selection({"fc.weight": torch.zeros(2, 2)}, n_heads=1)


def test_mlm_trains_as_a_vmapped_ensemble_like_sequential():
    from bayes_trainmap.tasks.ensemble import train_ensemble

    task = get_task("mlm", size="smoke", steps=20)
    ensemble = train_ensemble(task, [0, 1], device="cpu")
    assert [r.trainer for r in ensemble] == ["ensemble", "ensemble"]
    alone = train_sequential(task, 1, device="cpu").frame
    cols = ["l2", "spectral", "mean_b", "train_loss", "eval_accuracy"]
    np.testing.assert_allclose(ensemble[1].frame[cols].to_numpy(), alone[cols].to_numpy(), rtol=1e-4, atol=1e-6)
