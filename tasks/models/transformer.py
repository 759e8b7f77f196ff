"""Small transformers: the one-layer modular-addition model of Nanda et al. (2023)
and the building blocks shared with the masked language model (:mod:`tasks.models.bert`).

Attention projections are stored as ``nn.Linear`` layers in the packed per-head
layout (``query``/``key``/``value``: ``(n_heads * d_head, d_model)``, ``output``:
``(d_model, n_heads * d_head)``), so the weight statistics can cut them into one
matrix per head with :class:`tasks.stats.SelectedParameter` (``row_blocks`` /
``col_blocks``); see :func:`transformer_blocks_selection`.

Everything is written with plain tensor operations (no in-place state), so the
models can be trained as seed ensembles with ``torch.func.functional_call`` and
``vmap``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bayes_trainmap.core.errors import TaskError

from ..stats import ParameterSelection, SelectedParameter

#: Allowed placements of layer normalisation inside a block.
LAYER_NORM_PLACEMENTS = ("none", "pre", "post")


class MultiHeadSelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over a fixed-length sequence.

    Parameters
    ----------
    d_model : int
        Width of the residual stream.
    n_heads, d_head : int
        Number of heads and the width of each head (``n_heads * d_head`` need not
        equal ``d_model``).
    bias : bool
        Whether the four projections carry biases (BERT: yes; Nanda et al.: no).
    causal : bool
        Mask attention to later positions (autoregressive model).
    """

    def __init__(self, d_model: int, n_heads: int, d_head: int, *, bias: bool = False, causal: bool = False):
        super().__init__()
        self.n_heads = n_heads
        self.d_head = d_head
        self.causal = causal
        inner = n_heads * d_head
        self.query = nn.Linear(d_model, inner, bias=bias)
        self.key = nn.Linear(d_model, inner, bias=bias)
        self.value = nn.Linear(d_model, inner, bias=bias)
        self.output = nn.Linear(inner, d_model, bias=bias)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, H*dh) -> (B, H, L, dh)."""
        b, length, _ = x.shape
        return x.reshape(b, length, self.n_heads, self.d_head).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over positions.

        Parameters
        ----------
        x : Tensor, shape (B, L, d_model)

        Returns
        -------
        Tensor, shape (B, L, d_model)
        """
        q, k, v = (self._split_heads(proj(x)) for proj in (self.query, self.key, self.value))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)  # (B, H, L, L)
        if self.causal:
            length = x.shape[1]
            future = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        z = scores.softmax(dim=-1) @ v  # (B, H, L, dh)
        b, _, length, _ = z.shape
        return self.output(z.transpose(1, 2).reshape(b, length, self.n_heads * self.d_head))


class FeedForward(nn.Module):
    """Two-layer position-wise MLP ``fc_out(act(fc_in(x)))`` with biases."""

    def __init__(self, d_model: int, d_mlp: int, activation: str = "relu"):
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise TaskError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        self.fc_in = nn.Linear(d_model, d_mlp)
        self.fc_out = nn.Linear(d_mlp, d_model)
        self.activation = nn.ReLU() if activation == "relu" else nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.activation(self.fc_in(x)))


class TransformerBlock(nn.Module):
    """Attention then MLP, each with a residual connection.

    Parameters
    ----------
    d_model, n_heads, d_head, d_mlp : int
    layer_norm : {"none", "pre", "post"}
        ``"pre"``: ``x + f(LN(x))`` (GPT-2 style); ``"post"``: ``LN(x + f(x))``
        (BERT style); ``"none"``: ``x + f(x)`` (Nanda et al. 2023).
    attention_bias, causal : bool
        Passed to :class:`MultiHeadSelfAttention`.
    activation : {"relu", "gelu"}
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_head: int,
        d_mlp: int,
        *,
        layer_norm: str = "none",
        attention_bias: bool = False,
        causal: bool = False,
        activation: str = "relu",
    ):
        super().__init__()
        if layer_norm not in LAYER_NORM_PLACEMENTS:
            raise TaskError(f"layer_norm must be one of {LAYER_NORM_PLACEMENTS}, got {layer_norm!r}")
        self.layer_norm = layer_norm
        self.attention = MultiHeadSelfAttention(d_model, n_heads, d_head, bias=attention_bias, causal=causal)
        self.mlp = FeedForward(d_model, d_mlp, activation)
        if layer_norm != "none":
            self.ln_attention = nn.LayerNorm(d_model)
            self.ln_mlp = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, d_model) -> (B, L, d_model)."""
        if self.layer_norm == "pre":
            x = x + self.attention(self.ln_attention(x))
            return x + self.mlp(self.ln_mlp(x))
        if self.layer_norm == "post":
            x = self.ln_attention(x + self.attention(x))
            return self.ln_mlp(x + self.mlp(x))
        x = x + self.attention(x)
        return x + self.mlp(x)


class ModularTransformer(nn.Module):
    """One-layer (by default) transformer reading ``a b =`` and predicting ``(a + b) mod p``.

    The architecture and initialisation of Nanda et al. (2023), "Progress measures
    for grokking via mechanistic interpretability": token and learned positional
    embeddings, causal attention without biases, a ReLU MLP, no layer norm, an
    unembedding without bias, and logits read at the last position. All weights are
    drawn from ``N(0, 1/d_model)`` except the unembedding, ``N(0, 1/n_tokens)``;
    biases start at 0.

    Parameters
    ----------
    p : int
        The modulus; the vocabulary is ``0..p-1`` plus the ``=`` token ``p``, and
        the model predicts one of ``p`` classes.
    d_model, n_heads, d_head, d_mlp, n_layers : int
        Paper defaults: 128, 4, 32, 512, 1 (appendix D, Table 6).
    layer_norm : bool
        Add pre-attention and pre-MLP layer norms and a final one before the
        unembedding (the paper's "stabilized" variant, Figure 5).
    n_ctx : int
        Sequence length (3 for ``a b =``).
    """

    def __init__(
        self,
        p: int,
        d_model: int = 128,
        n_heads: int = 4,
        d_head: int = 32,
        d_mlp: int = 512,
        n_layers: int = 1,
        *,
        layer_norm: bool = False,
        n_ctx: int = 3,
    ):
        super().__init__()
        if p < 2:
            raise TaskError(f"modulus p must be >= 2, got {p!r}")
        self.p = p
        n_tokens = p + 1
        self.embed = nn.Embedding(n_tokens, d_model)
        self.pos_embed = nn.Parameter(torch.empty(n_ctx, d_model))
        self.blocks = nn.ModuleList(
            TransformerBlock(
                d_model, n_heads, d_head, d_mlp, layer_norm="pre" if layer_norm else "none", causal=True
            )
            for _ in range(n_layers)
        )
        self.ln_final = nn.LayerNorm(d_model) if layer_norm else nn.Identity()
        self.unembed = nn.Linear(d_model, p, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Nanda et al.'s initialisation (see the class docstring); uses the global RNG."""
        d_model = self.embed.embedding_dim
        std = 1.0 / math.sqrt(d_model)
        for name, param in self.named_parameters():
            if name.startswith("ln") or ".ln_" in name:
                continue  # LayerNorm keeps weight 1, bias 0
            if name.endswith("bias"):
                param.zero_()
            elif name == "unembed.weight":
                param.normal_(0.0, 1.0 / math.sqrt(self.embed.num_embeddings))
            else:
                param.normal_(0.0, std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits for the answer.

        Parameters
        ----------
        tokens : LongTensor, shape (B, n_ctx)

        Returns
        -------
        Tensor, shape (B, p)
        """
        x = self.embed(tokens) + self.pos_embed[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_final(x[:, -1]))


def transformer_blocks_selection(model: nn.Module, *, split_heads: bool = True) -> ParameterSelection:
    """Weight matrices and biases of a model's ``blocks`` (a list of :class:`TransformerBlock`).

    Each head's query, key and value projection (``d_head x d_model``) and its slice
    of the output projection (``d_model x d_head``) counts as its own matrix; the
    MLP's two weight matrices count as one matrix each. Biases: every bias inside
    the blocks (the MLP's, and the attention projections' where present).
    Excluded: embeddings (token and position), layer norms, and the unembedding /
    output head, which maps into the vocabulary space rather than computing on the
    residual stream. This follows the paper authors' released code, which uses the
    per-head W_Q, W_K, W_V, the output projection and the MLP of each block.

    Parameters
    ----------
    model : nn.Module
        Must have a ``blocks`` attribute iterating over :class:`TransformerBlock`.
    split_heads : bool
        False counts each packed projection as one matrix instead.

    Returns
    -------
    ParameterSelection
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise TaskError(f"{type(model).__name__} has no 'blocks' of TransformerBlock")
    entries: list[SelectedParameter] = []
    for i, block in enumerate(blocks):
        if not isinstance(block, TransformerBlock):
            raise TaskError(f"blocks[{i}] is a {type(block).__name__}, expected TransformerBlock")
        prefix = f"blocks.{i}."
        heads = block.attention.n_heads if split_heads else 1
        for proj in ("query", "key", "value"):
            entries.append(SelectedParameter(f"{prefix}attention.{proj}.weight", "matrix", row_blocks=heads))
        entries.append(SelectedParameter(f"{prefix}attention.output.weight", "matrix", col_blocks=heads))
        entries.append(SelectedParameter(f"{prefix}mlp.fc_in.weight", "matrix"))
        entries.append(SelectedParameter(f"{prefix}mlp.fc_out.weight", "matrix"))
        for proj in ("query", "key", "value", "output"):
            if getattr(block.attention, proj).bias is not None:
                entries.append(SelectedParameter(f"{prefix}attention.{proj}.bias", "bias"))
        entries.append(SelectedParameter(f"{prefix}mlp.fc_in.bias", "bias"))
        entries.append(SelectedParameter(f"{prefix}mlp.fc_out.bias", "bias"))
    return ParameterSelection(tuple(entries))
