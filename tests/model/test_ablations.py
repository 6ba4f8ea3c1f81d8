"""The four ablations, each chosen in ModelConfig and checked for the property that defines it."""

import torch
import torch.nn.functional as F

from tinylm.model import ModelConfig, TransformerLM
from tinylm.model.layers import RMSNorm, SiLUFFN

BASE = dict(vocab_size=50, context_length=16, d_model=48, num_layers=2, num_heads=4)


def build(**changes) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(ModelConfig(**BASE, **changes).reference())


def _rms(x):
    return x.pow(2).mean(-1).sqrt()


def test_no_norm_has_no_rmsnorm_and_plain_residuals():
    model = build(norm="none")
    assert not any(isinstance(m, RMSNorm) for m in model.modules())
    assert not any("ln" in k for k in model.state_dict())
    block, x = model.layers[0], torch.randn(2, 10, 48)
    h = x + block.attn(x)
    torch.testing.assert_close(block(x), h + block.ffn(h))
    # the logits are the raw head of the last residual stream
    ids = torch.randint(0, 50, (2, 10))
    with torch.no_grad():
        x = model.token_embeddings(ids)
        for layer in model.layers:
            x = layer(x)
        torch.testing.assert_close(model(ids), model.lm_head(x))


def test_post_norm_normalises_after_the_residual_add():
    post, pre = build(norm="post"), build(norm="pre")
    assert post.state_dict().keys() == pre.state_dict().keys()  # same weights, different wiring
    post.load_state_dict(pre.state_dict())
    x = torch.randn(2, 10, 48) * 5
    with torch.no_grad():
        block = post.layers[0]
        h = block.ln1(x + block.attn(x))
        torch.testing.assert_close(block(x), block.ln2(h + block.ffn(h)))
        # defining property: with unit gains every block output has RMS 1; pre-norm's does not
        torch.testing.assert_close(_rms(block(x)), torch.ones(2, 10), atol=1e-4, rtol=0)
        assert not torch.allclose(_rms(pre.layers[0](x)), torch.ones(2, 10), atol=0.1)


def _first_layer_scores(model, ids, positions):
    """Pre-softmax attention scores of layer 0, head-wise (B, H, T, T)."""
    attn = model.layers[0].attn
    h = model.layers[0].ln1(model.token_embeddings(ids))
    q, k = attn._heads(attn.q_proj(h), ids.shape[-1]), attn._heads(attn.k_proj(h), ids.shape[-1])
    if attn.rope is not None:
        q, k = attn.rope(q, positions), attn.rope(k, positions)
    return q @ k.transpose(-2, -1)


def test_nope_scores_ignore_positions():
    nope, rope = build(position="none"), build(position="rope")
    assert all(layer.attn.rope is None for layer in nope.layers)
    ids = torch.randint(0, 50, (1, 12))
    perm = torch.randperm(12)
    with torch.no_grad():
        for model, position_free in ((nope, True), (rope, False)):
            base = _first_layer_scores(model, ids, torch.arange(12))
            shuffled = _first_layer_scores(model, ids, perm)
            # permuting the positions changes nothing in NoPE's scores (and does in RoPE's)
            assert torch.allclose(base, shuffled, atol=1e-5) is position_free
        # the whole NoPE model ignores the positions argument
        torch.testing.assert_close(nope(ids, positions=perm), nope(ids))
        # ...and the causal mask is still its only source of order
        assert not torch.allclose(nope(ids.flip(-1))[0, -1], nope(ids)[0, -1])


def test_silu_ffn_matches_swiglu_parameter_count():
    silu, swiglu = build(ffn="silu"), build(ffn="swiglu")
    ffn = silu.layers[0].ffn
    assert isinstance(ffn, SiLUFFN) and not hasattr(ffn, "w3")
    assert ffn.w1.weight.shape == (4 * 48, 48)  # d_ff defaults to 4·d_model
    assert swiglu.layers[0].ffn.w1.weight.shape == (128, 48)  # 8/3·48 = 128
    assert silu.num_parameters() == swiglu.num_parameters()
    x = torch.randn(2, 5, 48)
    torch.testing.assert_close(ffn(x), F.linear(F.silu(F.linear(x, ffn.w1.weight)), ffn.w2.weight))
