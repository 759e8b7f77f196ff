"""A small BERT-style masked language model (Devlin et al. 2019) trained from scratch.

Token and learned position embeddings with a layer norm, post-LN encoder blocks
with GELU MLPs and attention biases (:class:`tasks.models.transformer.TransformerBlock`),
and BERT's prediction head: a dense transform, GELU, layer norm, then a decoder
tied to the token embedding plus an output bias. No dropout, so a seed fixes the
whole run. The weight statistics use :func:`tasks.models.transformer.transformer_blocks_selection`
(the encoder blocks, attention split per head).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..models.transformer import TransformerBlock


class MaskedLanguageModel(nn.Module):
    """BERT encoder with a masked-token prediction head.

    Parameters
    ----------
    vocab_size : int
    max_len : int
        Longest input sequence (size of the position embedding).
    d_model, n_layers, n_heads, d_mlp : int
        Width, depth, heads (``d_head = d_model // n_heads``) and MLP width.
    init_std : float
        Standard deviation of the normal initialisation of all weights and
        embeddings (BERT: 0.02); biases start at 0, layer norms at (1, 0).
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        d_mlp: int = 256,
        *,
        init_std: float = 0.02,
    ):
        super().__init__()
        self.token_embed = nn.Embedding(vocab_size, d_model)
        self.pos_embed = nn.Embedding(max_len, d_model)
        self.ln_embed = nn.LayerNorm(d_model)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                d_model,
                n_heads,
                d_model // n_heads,
                d_mlp,
                layer_norm="post",
                attention_bias=True,
                activation="gelu",
            )
            for _ in range(n_layers)
        )
        self.head_transform = nn.Linear(d_model, d_model)
        self.ln_head = nn.LayerNorm(d_model)
        self.decoder_bias = nn.Parameter(torch.zeros(vocab_size))
        self.init_std = init_std
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """BERT's initialisation; uses the global RNG."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.normal_(0.0, self.init_std)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        self.decoder_bias.zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits over the vocabulary at every position.

        Parameters
        ----------
        tokens : LongTensor, shape (B, L), L <= max_len

        Returns
        -------
        Tensor, shape (B, L, vocab_size)
        """
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.ln_embed(self.token_embed(tokens) + self.pos_embed(positions))
        for block in self.blocks:
            x = block(x)
        h = self.ln_head(F.gelu(self.head_transform(x)))
        # Decoder tied to the token embedding, read directly (no parameter aliasing),
        # so functional_call/vmap over the parameters needs no weight tying.
        return F.linear(h, self.token_embed.weight, self.decoder_bias)
