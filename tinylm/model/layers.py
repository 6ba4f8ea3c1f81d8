"""The parts of the Transformer, from nn.Parameter and tensor operations.

No nn.Linear, nn.Embedding, F.softmax or F.scaled_dot_product_attention on the reference path, so
every number can be traced to a line here. The one fast path (fused attention) sits beside the
reference in CausalMultiHeadSelfAttention and is tested equal to it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _trunc_normal_(weight: torch.Tensor, std: float) -> torch.Tensor:
    return nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-3 * std, b=3 * std)


class Linear(nn.Module):
    """y = x Wᵀ with W of shape (d_out, d_in), no bias; std sqrt(2/(d_in+d_out)) keeps variance steady."""

    def __init__(self, d_in: int, d_out: int, device=None, dtype=None):
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        self.weight = nn.Parameter(torch.empty(d_out, d_in, device=device, dtype=dtype))
        _trunc_normal_(self.weight, math.sqrt(2.0 / (d_in + d_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_out={self.d_out}"


class Embedding(nn.Module):
    """A lookup table (num, d): row i is token i's vector. Init N(0, std²) cut at ±3·std (std 1 by default)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, device=None, dtype=None, std: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim, device=device, dtype=dtype))
        _trunc_normal_(self.weight, std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight[ids]


class RMSNorm(nn.Module):
    """x / RMS(x) · g, computed in float32 (bf16 squares overflow/underflow), cast back to x's dtype."""

    def __init__(self, d_model: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_dtype = x.dtype
        x = x.float()
        inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (x * inv_rms * self.weight.float()).to(in_dtype)


class LayerNorm(nn.Module):
    """(x - mean(x)) / sqrt(var(x) + eps) · g + b over the last dim (biased variance, as torch's and
    GPT-2's), in float32 and cast back to x's dtype. g starts at 1, b at 0."""

    def __init__(self, d_model: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(d_model, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_dtype = x.dtype
        x = x.float()
        centred = x - x.mean(dim=-1, keepdim=True)
        inv_std = torch.rsqrt(centred.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (centred * inv_std * self.weight.float() + self.bias.float()).to(in_dtype)


def silu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def relu_squared(x: torch.Tensor) -> torch.Tensor:
    """max(x, 0)²: the feed-forward activation of Primer (So et al., 2021) and modded-nanogpt."""
    return torch.clamp_min(x, 0).square()


def gelu(x: torch.Tensor) -> torch.Tensor:
    """x·Φ(x) with Φ the standard normal CDF, 0.5·(1 + erf(x/√2)): the exact GELU (torch's default)."""
    return 0.5 * x * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))


ACTIVATIONS = {"silu": silu, "relu2": relu_squared, "gelu": gelu}


class SwiGLU(nn.Module):
    """W2(SiLU(W1 x) ⊙ W3 x): a gated feed-forward; 3 matrices, so d_ff ≈ 8/3·d_model matches 4·d_model FFNs."""

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None):
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device, dtype)
        self.w2 = Linear(d_ff, d_model, device, dtype)
        self.w3 = Linear(d_model, d_ff, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(silu(self.w1(x)) * self.w3(x))


class MLP(nn.Module):
    """W2·act(W1 x), ungated; act one of ACTIVATIONS ("silu", "relu2", "gelu"). With d_ff = 4·d_model it
    has about SwiGLU's parameter count."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "silu", device=None, dtype=None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r} (known: {', '.join(ACTIVATIONS)})")
        self.activation = activation
        self.w1 = Linear(d_model, d_ff, device, dtype)
        self.w2 = Linear(d_ff, d_model, device, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(ACTIVATIONS[self.activation](self.w1(x)))

    def extra_repr(self) -> str:
        return f"activation={self.activation}"


class SiLUFFN(MLP):
    """W2·SiLU(W1 x): the ungated ablation; with d_ff = 4·d_model it has SwiGLU's parameter count."""

    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None):
        super().__init__(d_model, d_ff, "silu", device, dtype)


class RotaryPositionalEmbedding(nn.Module):
    """RoPE: rotate pairs (x[2i], x[2i+1]) by angle pos·θ^(-2i/d_k).

    Positions are explicit, so a window starting at token 1000 rotates like tokens 1000.. of a
    longer text. cos/sin tables are buffers with persistent=False: derived, never checkpointed.
    """

    def __init__(self, theta: float, d_k: int, max_seq_len: int, device=None):
        super().__init__()
        if d_k % 2:
            raise ValueError(f"RoPE needs an even dimension, got {d_k}")
        inv_freq = theta ** (-torch.arange(0, d_k, 2, device=device, dtype=torch.float64) / d_k)
        angles = torch.arange(max_seq_len, device=device, dtype=torch.float64)[:, None] * inv_freq
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x: (..., T, d_k); positions: integer tensor broadcastable to (..., T)."""
        cos = self.cos[positions].to(x.dtype)
        sin = self.sin[positions].to(x.dtype)
        even, odd = x[..., 0::2], x[..., 1::2]
        rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
        return rotated.flatten(-2)


def softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """exp(x - max) / sum: subtracting the max keeps exp from overflowing (inputs of 1e4 are fine)."""
    shifted = x - x.amax(dim=dim, keepdim=True)
    e = torch.exp(shifted)
    return e / e.sum(dim=dim, keepdim=True)


def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(Q Kᵀ / sqrt(d_k)) V over any leading dims; mask True = may attend."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return softmax(scores, dim=-1) @ v


class CausalMultiHeadSelfAttention(nn.Module):
    """Q, K, V and output projections; heads split from d_model; RoPE on Q and K (not V); causal.

    `fused=True` computes the same attention with F.scaled_dot_product_attention(is_causal=True),
    which never materialises the T×T score matrix. `qk_norm=True` puts an RMSNorm over each head's
    dimension (gain of shape (head_dim,), shared by the heads) on queries and keys before RoPE, so
    the scores no longer grow with the size of W_q and W_k.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        rope: RotaryPositionalEmbedding | None = None,
        fused: bool = False,
        device=None,
        dtype=None,
        qk_norm: bool = False,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, d_model // num_heads
        self.fused = fused
        self.q_proj = Linear(d_model, d_model, device, dtype)
        self.k_proj = Linear(d_model, d_model, device, dtype)
        self.v_proj = Linear(d_model, d_model, device, dtype)
        self.output_proj = Linear(d_model, d_model, device, dtype)
        self.rope = rope  # shared with the other layers; its buffers are not saved
        if qk_norm:
            self.q_norm = RMSNorm(self.head_dim, norm_eps, device, dtype)
            self.k_norm = RMSNorm(self.head_dim, norm_eps, device, dtype)
        self.qk_norm = qk_norm

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None, kv_cache=None) -> torch.Tensor:
        """x: (..., T, d_model) -> (..., T, d_model).

        positions: RoPE positions broadcastable to (..., T); default 0..T-1, or, with a cache,
        the T positions after the cached ones. kv_cache: a `LayerKVCache`; the new keys and values
        are appended to it and the T queries attend to every cached position before them too.
        """
        *lead, T, d_model = x.shape
        past = 0 if kv_cache is None else kv_cache.length
        q, k, v = (self._heads(proj(x), T) for proj in (self.q_proj, self.k_proj, self.v_proj))
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            if positions is None:
                positions = torch.arange(past, past + T, device=x.device)
            positions = positions.unsqueeze(-2)  # (..., 1, T): the same positions for every head
            q, k = self.rope(q, positions), self.rope(k, positions)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)  # (..., heads, past + T, head_dim)
        if self.fused:
            out = self._fused_attention(q, k, v, past)
        else:
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(diagonal=past)
            out = scaled_dot_product_attention(q, k, v, mask)
        out = out.transpose(-3, -2).reshape(*lead, T, d_model)
        return self.output_proj(out)

    @staticmethod
    def _fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: int) -> torch.Tensor:
        """F.scaled_dot_product_attention, causal; query i sits at position past + i among the keys."""
        T = q.shape[-2]
        flat = [t.reshape(-1, *t.shape[-3:]) for t in (q, k, v)]
        if past == 0:
            out = F.scaled_dot_product_attention(*flat, is_causal=True)
        elif T == 1:  # one new position sees every cached one: no mask needed
            out = F.scaled_dot_product_attention(*flat)
        else:  # is_causal aligns the triangle top-left; with cached keys it must end bottom-right
            mask = torch.ones(T, past + T, dtype=torch.bool, device=q.device).tril(diagonal=past)
            out = F.scaled_dot_product_attention(*flat, attn_mask=mask)
        return out.reshape(q.shape)

    def _heads(self, x: torch.Tensor, T: int) -> torch.Tensor:
        """(..., T, d_model) -> (..., heads, T, head_dim)."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(-3, -2)
