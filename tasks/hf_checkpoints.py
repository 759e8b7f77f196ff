"""Trajectories from a series of Hugging Face BERT checkpoints (the MultiBERTs).

The paper's masked-language-modelling analysis (appendix E) uses the released
intermediate checkpoints of the MultiBERTs (Sellam et al., 2022), e.g. the hub ids
``google/multiberts-seed_0-step_0k`` ... ``google/multiberts-seed_0-step_2000k``,
without further training. :func:`trajectory_from_hf_checkpoints` loads each
checkpoint of one run in turn (a local ``save_pretrained`` directory or a hub id)
and computes the 14 weight statistics of its encoder.

This needs the optional ``transformers`` extra (``pip install
bayes_trainmap[transformers]``), imported only when called.

Statistics selection (:func:`bert_encoder_selection`): for every encoder layer, each
head's query, key and value projection (rows of the packed ``(H*d_head, d)``
weights) and its columns of the attention output projection are separate
matrices, as in the paper's transformer; the intermediate and output dense layers
are one matrix each; biases are all biases of those projections. Embeddings, layer
norms, the pooler and the pre-training heads are excluded, so BERT models with
different heads (``BertForMaskedLM``, ``BertForPreTraining``, ``BertModel``) give the
same statistics for the same encoder.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bayes_trainmap.core.errors import TaskError
from bayes_trainmap.core.schema import RUN_COLUMN, SEED_COLUMN, STEP_COLUMN

from .stats import ParameterSelection, SelectedParameter, weight_statistics
from .trajectory_io import run_frame, write_run

logger = logging.getLogger(__name__)

_LAYER = re.compile(r"^(?P<prefix>(?:.*\.)?encoder\.layer\.\d+\.)attention\.self\.query\.weight$")
_STEP = re.compile(r"step[_-]?(?P<number>\d+)(?P<kilo>k?)(?:$|[^0-9a-z])", re.IGNORECASE)


class MissingExtraError(TaskError, ImportError):
    """An optional dependency (a pip extra of bayes_trainmap) is not installed."""


def _transformers():
    try:
        import transformers
    except ImportError as exc:
        raise MissingExtraError(
            "reading Hugging Face checkpoints needs the optional 'transformers' extra: "
            "pip install 'bayes_trainmap[transformers]'"
        ) from exc
    return transformers


def bert_encoder_selection(
    state_dict: Mapping[str, torch.Tensor], n_heads: int, *, split_heads: bool = True
) -> ParameterSelection:
    """Weight matrices and biases of the encoder layers of a BERT-style state dict.

    Parameters
    ----------
    state_dict : mapping of str to Tensor
        Keys as in ``transformers``' BERT/RoBERTa models (any prefix before
        ``encoder.layer.<i>.``, e.g. ``bert.``).
    n_heads : int
        ``config.num_attention_heads``.
    split_heads : bool
        False counts each attention projection as one matrix (as in the paper
        authors' MultiBERTs code) instead of one per head.

    Returns
    -------
    ParameterSelection
    """
    heads = n_heads if split_heads else 1
    prefixes = sorted(
        (m.group("prefix") for m in map(_LAYER.match, state_dict) if m),
        key=lambda p: int(p.rstrip(".").rsplit(".", 1)[1]),
    )
    if not prefixes:
        raise TaskError("no BERT encoder layers ('encoder.layer.<i>.attention.self.query.weight') in the state dict")
    entries: list[SelectedParameter] = []
    for prefix in prefixes:
        for proj in ("query", "key", "value"):
            entries.append(SelectedParameter(f"{prefix}attention.self.{proj}.weight", "matrix", row_blocks=heads))
        entries.append(SelectedParameter(f"{prefix}attention.output.dense.weight", "matrix", col_blocks=heads))
        entries.append(SelectedParameter(f"{prefix}intermediate.dense.weight", "matrix"))
        entries.append(SelectedParameter(f"{prefix}output.dense.weight", "matrix"))
        for name in (
            "attention.self.query.bias",
            "attention.self.key.bias",
            "attention.self.value.bias",
            "attention.output.dense.bias",
            "intermediate.dense.bias",
            "output.dense.bias",
        ):
            if prefix + name in state_dict:
                entries.append(SelectedParameter(prefix + name, "bias"))
    missing = [e.name for e in entries if e.name not in state_dict]
    if missing:
        raise TaskError(f"BERT state dict lacks {', '.join(missing[:3])}")
    return ParameterSelection(tuple(entries))


def step_from_checkpoint_name(name: str | os.PathLike) -> int:
    """The training step in a checkpoint name such as ``multiberts-seed_0-step_20k`` (-> 20000).

    Recognises ``step_<n>``, ``step-<n>``, ``step<n>`` with an optional ``k``
    (thousands) in the last path component (``checkpoint-<n>`` is also accepted).
    """
    base = os.path.basename(os.fspath(name).rstrip("/\\"))
    match = _STEP.search(base)
    if match:
        return int(match.group("number")) * (1000 if match.group("kilo") else 1)
    match = re.fullmatch(r"checkpoint-(\d+)", base)
    if match:
        return int(match.group(1))
    raise TaskError(f"cannot read a training step from checkpoint name {base!r}; pass steps= explicitly")


def trajectory_from_hf_checkpoints(
    checkpoints: Sequence[str | os.PathLike],
    steps: Sequence[int] | None = None,
    *,
    run: str = "run-0",
    seed: int = 0,
    split_heads: bool = True,
    outcome_fn: Callable[[torch.nn.Module, int], Mapping[str, float]] | None = None,
    auto_class: str = "AutoModel",
    device: str | torch.device = "cpu",
    progress: bool = False,
    out: str | os.PathLike | None = None,
    metadata: Mapping[str, Any] | None = None,
    **from_pretrained_kwargs,
) -> pd.DataFrame:
    """The trajectory (one row per checkpoint) of one run saved as Hugging Face checkpoints.

    Parameters
    ----------
    checkpoints : sequence of str or path
        Local directories written by ``save_pretrained`` or hub ids, one per
        checkpoint of the same run (any order).
    steps : sequence of int, optional
        The training step of each checkpoint; read from the names
        (:func:`step_from_checkpoint_name`) when omitted.
    run : str
        Value of the ``run`` column.
    seed : int
        Value of the ``seed`` column (e.g. the MultiBERTs seed).
    split_heads : bool
        Attention projections one matrix per head (default) or packed.
    outcome_fn : callable(model, step) -> mapping of str to float, optional
        Extra columns per checkpoint, e.g. a masked-LM loss on held-out text
        (load with ``auto_class="AutoModelForMaskedLM"`` for that).
    auto_class : str
        The ``transformers`` auto class that loads each checkpoint (default
        ``"AutoModel"``: the encoder without heads, which is all the statistics use).
    device : str or torch.device
        Where each model is loaded and its statistics computed.
    progress : bool
        Show a tqdm bar over checkpoints.
    out : path-like, optional
        Also write the run atomically in the trajectory format: into this directory
        as ``run-<run>.parquet``, or to this ``.parquet`` file.
    metadata : mapping, optional
        JSON-serialisable metadata stored with the written run (with the
        checkpoints' names and the selection rule added).
    **from_pretrained_kwargs
        Passed to ``from_pretrained`` (``revision``,
        ``cache_dir``, ``local_files_only``, ...).

    Returns
    -------
    pandas.DataFrame
        Columns ``run``, ``seed``, ``step``, the 14 statistics, then any outcome
        columns; rows sorted by step (:func:`tasks.trajectory_io.run_frame`).

    Raises
    ------
    MissingExtraError
        ``transformers`` is not installed.
    TaskError
        No checkpoints, steps that cannot be read or repeat, or a checkpoint
        that is not a BERT-style encoder.
    """
    steps = _checked_steps(checkpoints, steps)
    transformers = _transformers()
    loader = getattr(transformers, auto_class, None)
    if loader is None or not hasattr(loader, "from_pretrained"):
        raise TaskError(f"auto_class {auto_class!r} is not a transformers auto class such as 'AutoModel'")
    order = sorted(range(len(steps)), key=steps.__getitem__)
    iterator = order
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(order, desc=f"checkpoints of {run}", unit="ckpt")
    rows = []
    for i in iterator:
        source = os.fspath(checkpoints[i])
        logger.info("loading checkpoint %s (step %d)", source, steps[i])
        row = {RUN_COLUMN: run, SEED_COLUMN: int(seed), STEP_COLUMN: steps[i]}
        row.update(_checkpoint_statistics(loader, source, steps[i], split_heads, outcome_fn, device,
                                          from_pretrained_kwargs))
        rows.append(row)
    frame = run_frame(rows)
    if out is not None:
        sources = [os.fspath(checkpoints[i]) for i in order]
        write_run(frame, _run_file(out, run), _hf_run_metadata(metadata, run, seed, sources, split_heads))
    return frame


def _hf_run_metadata(metadata: Mapping[str, Any] | None, run: str, seed: int, sources: list[str],
                     split_heads: bool) -> dict[str, Any]:
    """The metadata written with an imported run: the caller's, then the run's identity,
    its checkpoints (in step order) and the selection rule."""
    return {
        **dict(metadata or {}),
        "run": run,
        "seed": int(seed),
        "diverged": False,
        "source": "huggingface_checkpoints",
        "checkpoints": sources,
        "split_heads": split_heads,
    }


def _checked_steps(checkpoints: Sequence[str | os.PathLike], steps: Sequence[int] | None) -> list[int]:
    """The training step of each checkpoint (read from the names when ``steps`` is
    None); raises :class:`TaskError` for no checkpoints, a count mismatch or repeats."""
    if len(checkpoints) == 0:
        raise TaskError("no checkpoints given")
    if steps is None:
        steps = [step_from_checkpoint_name(c) for c in checkpoints]
    elif len(steps) != len(checkpoints):
        raise TaskError(f"got {len(steps)} steps for {len(checkpoints)} checkpoints")
    steps = [int(s) for s in steps]
    if len(set(steps)) != len(steps):
        raise TaskError(f"checkpoint steps must be distinct, got {sorted(steps)}")
    return steps


def _checkpoint_statistics(loader, source: str, step: int, split_heads: bool, outcome_fn, device,
                           from_pretrained_kwargs: Mapping[str, Any]) -> dict[str, float]:
    """Load one checkpoint with ``loader`` and return its 14 statistics and outcomes."""
    model = loader.from_pretrained(source, **from_pretrained_kwargs).to(device)
    model.eval()
    state = model.state_dict()
    n_heads = int(model.config.num_attention_heads)
    selection = bert_encoder_selection(state, n_heads, split_heads=split_heads)
    row = weight_statistics(state, selection)
    if outcome_fn is not None:
        row.update({k: float(v) for k, v in outcome_fn(model, step).items()})
    return row


def _run_file(out: str | os.PathLike, run: str) -> Path:
    """``out`` itself if it names a ``.parquet`` file, else ``out/run-<run>.parquet``;
    its folder is created."""
    target = Path(out)
    if target.suffix != ".parquet":
        target = target / f"run-{run}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    return target
