"""A small decoder-only transformer (GPT-style, pre-norm) over token ids, for language modeling.

Attention is ``torch.nn.functional.scaled_dot_product_attention`` with ``is_causal=True``, which
picks PyTorch's fused kernels and exports to ONNX. Positions are learned embeddings, so the
context is at most ``block_size`` tokens; any shorter sequence works (the ONNX export keeps the
sequence axis dynamic). With ``tie_weights`` the output layer reuses the token embedding matrix,
which saves ``vocab * d_model`` parameters and usually helps small models.

>>> model = TransformerLM(vocab_size=65, d_model=32, n_heads=4, n_layers=2, d_ff=64,
...                       dropout=0.0, block_size=16, tie_weights=True)
>>> model(torch.zeros(2, 10, dtype=torch.long)).shape
torch.Size([2, 10, 65])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kiln.config.model_options import TransformerOptions
from kiln.data.spec import DataSpec
from kiln.errors import ConfigError


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        # [B, T, C] -> [B, heads, T, C / heads]
        q, k, v = (z.view(b, t, self.n_heads, c // self.n_heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        out: Tensor = self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))
        return out


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        out: Tensor = x + self.mlp(self.ln2(x))
        return out


class TransformerLM(nn.Module):
    """Token ids ``[batch, seq]`` (seq <= block_size) in, next-token logits ``[batch, seq, vocab]`` out."""

    def __init__(
        self, vocab_size: int, d_model: int, n_heads: int, n_layers: int, d_ff: int,
        dropout: float, block_size: int, tie_weights: bool,
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(block_size, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.apply(self._init)
        if tie_weights:
            self.head.weight = self.tok_emb.weight
        # GPT-2's scaled init of the residual projections keeps the stream's variance in check
        for name, p in self.named_parameters():
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, ids: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.tok_emb(ids) + self.pos_emb(positions))
        for block in self.blocks:
            x = block(x)
        logits: Tensor = self.head(self.ln_f(x))
        return logits


def build(cfg: TransformerOptions, spec: DataSpec) -> nn.Module:
    """The transformer for a language-modeling DataSpec (vocabulary size, window length)."""
    if spec.task != "language_modeling":
        raise ConfigError(
            f"model.name transformer reads token ids; dataset {spec.name!r} is {spec.task}. "
            "Use data.name text (or an mlp/cnn model for this dataset)"
        )
    if cfg.d_model % cfg.n_heads:
        raise ConfigError(
            f"model.d_model={cfg.d_model} must be a multiple of model.n_heads={cfg.n_heads}"
        )
    window = spec.input_shape[0]
    block_size = cfg.block_size if cfg.block_size is not None else window
    if block_size < window:
        raise ConfigError(
            f"model.block_size={block_size} is shorter than the data's windows "
            f"(data.text.block_size={window}); raise it or leave it null to match"
        )
    return TransformerLM(
        vocab_size=spec.num_classes, d_model=cfg.d_model, n_heads=cfg.n_heads,
        n_layers=cfg.n_layers, d_ff=cfg.d_ff or 4 * cfg.d_model, dropout=cfg.dropout,
        block_size=block_size, tie_weights=cfg.tie_weights,
    )
