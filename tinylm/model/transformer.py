"""Block and TransformerLM: embedding, N blocks, final RMSNorm, projection to vocabulary logits.

The reference path and the fast paths share every parameter; `ModelConfig` picks between them
(`fused_attention`, `autocast`, `compile`), and `ModelConfig.reference()` turns them all off.
State-dict keys follow SPEC §5 so weights move between from-scratch implementations.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from tinylm.errors import ConfigError
from tinylm.model.config import ModelConfig
from tinylm.model.kv_cache import KVCache
from tinylm.model.layers import (
    MLP,
    CausalMultiHeadSelfAttention,
    Embedding,
    LayerNorm,
    Linear,
    RMSNorm,
    RotaryPositionalEmbedding,
    SiLUFFN,
    SwiGLU,
)

# GPT-2's init std for the position table, and for a tied token matrix (it is the output layer too)
_GPT2_EMBEDDING_STD = 0.02


def make_norm(config: ModelConfig, dim: int | None = None) -> nn.Module:
    """The normalisation layer `config.norm_type` names ("rms" or "layer") over `dim` (default d_model)."""
    cls = LayerNorm if config.norm_type == "layer" else RMSNorm
    return cls(config.d_model if dim is None else dim, config.norm_eps)


def make_ffn(config: ModelConfig) -> nn.Module:
    """The feed-forward `config.ffn` names: SwiGLU, or an ungated MLP with SiLU, ReLU² or GELU."""
    if config.ffn == "swiglu":
        return SwiGLU(config.d_model, config.ffn_dim)
    if config.ffn == "silu":
        return SiLUFFN(config.d_model, config.ffn_dim)
    return MLP(config.d_model, config.ffn_dim, config.ffn)


class Block(nn.Module):
    """Pre-norm: x + MHA(norm(x)), then x + FFN(norm(x)). Ablations: post-norm, or no norm at all."""

    def __init__(self, config: ModelConfig, rope: RotaryPositionalEmbedding | None = None):
        super().__init__()
        self.norm = config.norm
        if config.norm != "none":
            self.ln1 = make_norm(config)
        self.attn = CausalMultiHeadSelfAttention(
            config.d_model, config.num_heads, rope=rope, fused=config.fused_attention,
            qk_norm=config.qk_norm, norm_eps=config.norm_eps,
        )
        if config.norm != "none":
            self.ln2 = make_norm(config)
        self.ffn = make_ffn(config)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None, kv_cache=None) -> torch.Tensor:
        if self.norm == "pre":
            x = x + self.attn(self.ln1(x), positions, kv_cache)
            return x + self.ffn(self.ln2(x))
        if self.norm == "post":  # the norm follows the residual add (the original Transformer)
            x = self.ln1(x + self.attn(x, positions, kv_cache))
            return self.ln2(x + self.ffn(x))
        x = x + self.attn(x, positions, kv_cache)
        return x + self.ffn(x)


@torch.compiler.assume_constant_result
def _cuda_bf16_supported() -> bool:
    """torch.cuda.is_bf16_supported(), which torch.compile cannot trace: marked constant, so a compiled
    caller (the DDP wrapper under `model.compile = true` compiles forward whole) keeps one graph. On an
    H200 the query inside forward broke the graph and dynamo recompiled the rest on every call."""
    return torch.cuda.is_bf16_supported()


class TransformerLM(nn.Module):
    """forward(ids[..., T], positions=None, kv_cache=None) -> logits[..., T, vocab_size] (float32).

    Any number of leading batch dims. `positions` (broadcastable to ids) lets a window of a longer
    text keep its true positions; by default they are 0..T-1. T may not exceed context_length.
    `kv_cache` (a KVCache) lets generation feed one new position at a time.
    """

    supports_kv_cache = True  # tinylm.generate feeds only the new positions to models that say so

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ConfigError(f"TransformerLM needs a ModelConfig, got {type(config).__name__}")
        self.config = config
        # tied: the matrix is the output layer too, so it starts at the output layer's small scale
        embedding_std = _GPT2_EMBEDDING_STD if config.tie_embeddings else 1.0
        self.token_embeddings = Embedding(config.vocab_size, config.d_model, std=embedding_std)
        rope = None
        if config.position == "rope":
            rope = RotaryPositionalEmbedding(config.rope_theta, config.head_dim, config.context_length)
        elif config.position == "learned":
            self.position_embeddings = Embedding(config.context_length, config.d_model, std=_GPT2_EMBEDDING_STD)
        if config.embed_norm:  # the residual stream starts at a fixed scale (modded-nanogpt)
            self.ln_embed = make_norm(config)
        self.layers = nn.ModuleList(Block(config, rope) for _ in range(config.num_layers))
        if config.norm != "none":
            self.ln_final = make_norm(config)
        if not config.tie_embeddings:  # tied: logits = x Eᵀ with E = token_embeddings.weight
            self.lm_head = Linear(config.d_model, config.vocab_size)
        if config.zero_init_residual:  # each block adds nothing at first: it starts as the identity
            with torch.no_grad():
                for layer in self.layers:
                    layer.attn.output_proj.weight.zero_()
                    layer.ffn.w2.weight.zero_()
        # config.compile: the layers' arithmetic (_body) is compiled, not forward with its input checks
        # and autocast decision. On an H200, compiling forward broke the graph at the autocast decision
        # (torch.cuda.is_bf16_supported, now also marked constant for compiled callers) and dynamo
        # recompiled the rest whenever training and evaluation alternated, until its recompile limit,
        # then ran it eagerly (33 ms/step in the trainer against 18 ms). Lazy (compiled at the first
        # call); state-dict keys unchanged.
        self._compiled_body = torch.compile(self._body) if config.compile else None

    def forward(self, ids: torch.Tensor, positions: torch.Tensor | None = None, kv_cache: KVCache | None = None) -> torch.Tensor:
        """ids (..., T) int64 -> logits (..., T, vocab_size) float32.

        kv_cache: a `KVCache` (see tinylm.model.kv_cache) holding the keys and values of the
        positions already processed; `ids` are then only the new positions, which default to
        the ones right after the cached ones. Raises ConfigError when the positions would pass
        context_length.
        """
        T = ids.shape[-1]
        if T > self.config.context_length:
            raise ConfigError(
                f"input has {T} tokens but the model's context_length is {self.config.context_length}; "
                "pass at most context_length tokens (e.g. the last ones)"
            )
        lead = ids.shape[:-1]
        ids = ids.reshape(-1, T)
        layer_caches = self._layer_caches(kv_cache, T)
        if positions is not None and self.config.position != "none":
            if positions.numel() and int(positions.max()) >= self.config.context_length:
                raise ConfigError(
                    f"position {int(positions.max())} is beyond the model's context_length "
                    f"{self.config.context_length}"
                )
            positions = positions.expand(*lead, T).reshape(-1, T)
        elif kv_cache is not None or self.config.position == "learned":  # after the cached ones (checked to fit above)
            past = 0 if kv_cache is None else kv_cache.length
            positions = torch.arange(past, past + T, device=ids.device)
        # generation with a KV cache feeds a new length each call: eager (compiling it would recompile per length)
        body = self._body if self._compiled_body is None or kv_cache is not None else self._compiled_body
        with self._autocast(ids.device):
            logits = body(ids, positions, layer_caches)
        return logits.float().reshape(*lead, T, self.config.vocab_size)

    def _body(self, ids: torch.Tensor, positions: torch.Tensor | None, layer_caches: list) -> torch.Tensor:
        """(B, T) ids -> (B, T, vocab_size) logits in the compute dtype: embeddings (then their norm, with
        `embed_norm`), blocks, final norm, head."""
        x = self.token_embeddings(ids)
        if self.config.position == "learned":
            x = x + self.position_embeddings(positions)
        if self.config.embed_norm:
            x = self.ln_embed(x)
        for layer, layer_cache in zip(self.layers, layer_caches):
            x = layer(x, positions, layer_cache)
        if self.config.norm != "none":
            x = self.ln_final(x)
        return self.output_logits(x)

    def output_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_model) -> (..., vocab_size): the LM head, or x Eᵀ with the token embeddings E when tied;
        then, with `logit_softcap` c > 0, c·tanh(logits / c) (Gemma 2, modded-nanogpt)."""
        if self.config.tie_embeddings:
            logits = x @ self.token_embeddings.weight.T
        else:
            logits = self.lm_head(x)
        cap = self.config.logit_softcap
        if cap > 0:
            logits = cap * torch.tanh(logits / cap)
        return logits

    def _layer_caches(self, kv_cache: KVCache | None, T: int) -> list:
        """One LayerKVCache per block (None each without a cache), checked to fit T more positions."""
        if kv_cache is None:
            return [None] * len(self.layers)
        if len(kv_cache.layers) != len(self.layers):
            raise ConfigError(f"the KV cache has {len(kv_cache.layers)} layers but the model {len(self.layers)}")
        if kv_cache.length + T > self.config.context_length:
            raise ConfigError(
                f"the KV cache holds {kv_cache.length} positions and {T} more would pass the model's "
                f"context_length {self.config.context_length}; start a new cache from the last window"
            )
        return kv_cache.layers

    def _autocast(self, device: torch.device):
        mode = self.config.autocast
        if mode == "bf16" or (mode == "auto" and device.type == "cuda" and _cuda_bf16_supported()):
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
