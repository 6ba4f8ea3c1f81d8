"""Each part of the model against an independent plain-PyTorch computation of the same thing."""

import math

import pytest
import torch
import torch.nn.functional as F

from tinylm.model.layers import (
    CausalMultiHeadSelfAttention,
    Embedding,
    Linear,
    RMSNorm,
    RotaryPositionalEmbedding,
    SiLUFFN,
    SwiGLU,
    scaled_dot_product_attention,
    softmax,
)

# std of a normal truncated at ±3σ, divided by σ: sqrt(1 - 2·3·φ(3) / (2Φ(3) - 1))
TRUNC3_STD = math.sqrt(1 - 6 * math.exp(-4.5) / math.sqrt(2 * math.pi) / math.erf(3 / math.sqrt(2)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_linear_is_x_times_w_transposed():
    lin = Linear(7, 5)
    assert lin.weight.shape == (5, 7)
    assert not any("bias" in n for n, _ in lin.named_parameters())
    x = torch.randn(2, 3, 7)
    torch.testing.assert_close(lin(x), x @ lin.weight.detach().T)
    torch.testing.assert_close(lin(x), F.linear(x, lin.weight))


@pytest.mark.parametrize(
    "make, std",
    [(lambda: Linear(256, 512).weight, math.sqrt(2 / (256 + 512))), (lambda: Embedding(300, 400).weight, 1.0)],
    ids=["linear", "embedding"],
)
def test_init_is_truncated_normal_with_spec_std(make, std):
    w = make().detach()
    assert w.abs().max() <= 3 * std + 1e-6  # cut at ±3 std
    assert w.abs().max() > 2.5 * std  # ...but not cut tighter (P(|z|>2.5) ≈ 1.2%, n > 1e5)
    assert abs(w.mean().item()) < 0.01 * std
    assert w.std().item() == pytest.approx(std * TRUNC3_STD, rel=0.01)


def test_embedding_looks_up_rows():
    emb = Embedding(11, 4)
    ids = torch.tensor([[0, 3, 10], [3, 3, 1]])
    torch.testing.assert_close(emb(ids), F.embedding(ids, emb.weight))


def test_softmax_matches_torch_including_huge_inputs():
    x = torch.randn(4, 9) * 3
    torch.testing.assert_close(softmax(x, dim=-1), torch.softmax(x, dim=-1))
    torch.testing.assert_close(softmax(x, dim=0), torch.softmax(x, dim=0))
    big = torch.tensor([[1e4, -1e4, 0.0, 1e4 - 1.0], [-1e4, -1e4, -1e4, -1e4]])
    out = softmax(big, dim=-1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.softmax(big, dim=-1))


def test_attention_matches_torch_sdpa_with_mask_and_4d_inputs():
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 4)
    mask = torch.rand(5, 6) > 0.3
    mask[:, 0] = True  # no fully masked row (both would give NaN there)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask), expected)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))
    # any number of leading dims, a per-batch mask
    q5, k5, v5 = (t.unsqueeze(0).expand(2, -1, -1, -1, -1) for t in (q, k, v))
    mask5 = torch.rand(2, 2, 3, 5, 6) > 0.3
    mask5[..., 0] = True
    expected5 = F.scaled_dot_product_attention(
        q5.reshape(-1, 5, 8), k5.reshape(-1, 6, 8), v5.reshape(-1, 6, 4), attn_mask=mask5.reshape(-1, 5, 6)
    ).reshape(2, 2, 3, 5, 4)
    torch.testing.assert_close(scaled_dot_product_attention(q5, k5, v5, mask5), expected5)


def test_rmsnorm_formula_in_float32_for_bf16_inputs():
    norm = RMSNorm(16)
    assert torch.equal(norm.weight, torch.ones(16)) and norm.eps == 1e-5
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 16))
    x = torch.randn(3, 4, 16) * 100
    expected = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), expected.detach())
    xb = x.bfloat16()
    out = norm(xb)
    assert out.dtype == torch.bfloat16
    x32 = xb.float()  # the bf16 values, normalised exactly, then rounded once to bf16
    exact = (x32 / torch.sqrt((x32**2).mean(-1, keepdim=True) + 1e-5) * norm.weight).bfloat16()
    torch.testing.assert_close(out, exact.detach(), atol=0, rtol=0)


def test_rmsnorm_survives_half_precision_overflow_of_squares():
    x = torch.full((1, 8), 300.0).half()  # x² = 9e4 overflows float16 (max 65504), not float32
    assert torch.isinf((x * x).sum())  # the naive half-precision computation overflows
    out = RMSNorm(8)(x)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), torch.ones(1, 8), atol=1e-3, rtol=0)


def _rope_complex(x, positions, theta):
    """Independent RoPE: pair (x[2i], x[2i+1]) as a complex number times e^{i·pos·θ^(-2i/d)}."""
    d = x.shape[-1]
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    freqs = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    rot = torch.polar(torch.ones_like(freqs), positions.double()[..., None] * freqs)
    return torch.view_as_real(z * rot).reshape(x.shape).float()


def test_rope_matches_complex_rotation():
    rope = RotaryPositionalEmbedding(10_000.0, 16, 64)
    x = torch.randn(2, 10, 16)
    pos = torch.tensor([0, 1, 2, 3, 5, 8, 13, 21, 34, 63])
    torch.testing.assert_close(rope(x, pos), _rope_complex(x, pos, 10_000.0), atol=1e-5, rtol=1e-5)
    pos2 = torch.randint(0, 64, (2, 10))  # per-sequence positions
    torch.testing.assert_close(rope(x, pos2), _rope_complex(x, pos2, 10_000.0), atol=1e-5, rtol=1e-5)
    assert rope.state_dict() == {}  # sin/cos are derived, never checkpointed


def test_rope_on_shifted_window_equals_slice_of_longer_sequence():
    rope = RotaryPositionalEmbedding(500.0, 8, 32)
    x = torch.randn(3, 20, 8)
    full = rope(x, torch.arange(20))
    window = rope(x[:, 7:15], torch.arange(7, 15))
    torch.testing.assert_close(window, full[:, 7:15])
    assert not torch.allclose(rope(x[:, 7:15], torch.arange(8)), full[:, 7:15])


def test_rope_keeps_scores_relative():
    """q·k after RoPE depends only on the distance between positions."""
    rope = RotaryPositionalEmbedding(10_000.0, 8, 128)
    q, k = torch.randn(8), torch.randn(8)
    s1 = rope(q[None], torch.tensor([10])) @ rope(k[None], torch.tensor([3])).T
    s2 = rope(q[None], torch.tensor([107])) @ rope(k[None], torch.tensor([100])).T
    torch.testing.assert_close(s1, s2, atol=1e-5, rtol=1e-5)


def test_swiglu_and_silu_ffn_match_their_formulas():
    ffn = SwiGLU(12, 20)
    x = torch.randn(2, 5, 12)
    w1, w2, w3 = (getattr(ffn, n).weight.detach() for n in ("w1", "w2", "w3"))
    a = x @ w1.T
    torch.testing.assert_close(ffn(x), ((a * torch.sigmoid(a)) * (x @ w3.T)) @ w2.T)
    torch.testing.assert_close(ffn(x), F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2))
    plain = SiLUFFN(12, 48)
    torch.testing.assert_close(plain(x), F.linear(F.silu(F.linear(x, plain.w1.weight)), plain.w2.weight))


def _mha_by_hand(attn, x, positions, theta):
    """Multi-head attention written out with torch built-ins and the complex RoPE above."""
    B, T, D = x.shape
    H = attn.num_heads

    def heads(w):
        return F.linear(x, w).view(B, T, H, D // H).transpose(1, 2)

    q, k, v = heads(attn.q_proj.weight), heads(attn.k_proj.weight), heads(attn.v_proj.weight)
    q, k = _rope_complex(q, positions, theta), _rope_complex(k, positions, theta)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.linear(out.transpose(1, 2).reshape(B, T, D), attn.output_proj.weight)


@pytest.mark.parametrize("fused", [False, True])
def test_causal_multihead_attention_matches_hand_written(fused):
    rope = RotaryPositionalEmbedding(10_000.0, 4, 32)
    attn = CausalMultiHeadSelfAttention(16, 4, rope=rope, fused=fused)
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), _mha_by_hand(attn, x, torch.arange(9), 10_000.0), atol=1e-5, rtol=1e-4)
        pos = torch.arange(5, 14)
        torch.testing.assert_close(attn(x, pos), _mha_by_hand(attn, x, pos, 10_000.0), atol=1e-5, rtol=1e-4)
        # leading dims: (2, 3, T, D) equals running each (T, D) alone
        x4 = torch.randn(2, 3, 9, 16)
        torch.testing.assert_close(attn(x4)[1, 2], attn(x4[1, 2]), atol=1e-6, rtol=1e-5)
