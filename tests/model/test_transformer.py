"""The whole LM: logits vs a second forward pass written here from the state dict alone,
causality, positions, leading dims, the length limit and the state-dict layout (SPEC §5)."""

import pytest
import torch
import torch.nn.functional as F

from tinylm.errors import ConfigError
from tinylm.model import ModelConfig, TransformerLM

SMALL = dict(vocab_size=97, context_length=24, d_model=32, num_layers=2, num_heads=4, d_ff=80, rope_theta=1000.0)


def small_model(**changes) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(ModelConfig(**SMALL).reference().replace(**changes))


def forward_from_state_dict(sd, ids, num_layers, num_heads, theta, eps=1e-5):
    """An independent LM forward: torch built-ins, complex-number RoPE, only the state dict's keys."""
    B, T = ids.shape
    x = F.embedding(ids, sd["token_embeddings.weight"])
    D = x.shape[-1]
    hd = D // num_heads
    freqs = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    rot = torch.polar(torch.ones(T, hd // 2, dtype=torch.float64), torch.arange(T)[:, None] * freqs)

    def rope(t):  # (B, H, T, hd)
        z = torch.view_as_complex(t.double().reshape(B, num_heads, T, hd // 2, 2).contiguous())
        return torch.view_as_real(z * rot).reshape(B, num_heads, T, hd).float()

    def norm(t, w):
        return F.rms_norm(t, (D,), w, eps)

    for i in range(num_layers):
        p = lambda name: sd[f"layers.{i}.{name}.weight"]  # noqa: E731
        h = norm(x, p("ln1"))
        q, k, v = (F.linear(h, p(f"attn.{n}_proj")).view(B, T, num_heads, hd).transpose(1, 2) for n in "qkv")
        a = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
        x = x + F.linear(a.transpose(1, 2).reshape(B, T, D), p("attn.output_proj"))
        h = norm(x, p("ln2"))
        x = x + F.linear(F.silu(F.linear(h, p("ffn.w1"))) * F.linear(h, p("ffn.w3")), p("ffn.w2"))
    return F.linear(norm(x, sd["ln_final.weight"]), sd["lm_head.weight"])


def test_state_dict_keys_and_shapes_follow_the_spec():
    model = small_model()
    sd = model.state_dict()
    expected = ["token_embeddings.weight"]
    for i in range(2):
        expected += [f"layers.{i}.{n}.weight" for n in
                     ("ln1", "attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.output_proj", "ln2",
                      "ffn.w1", "ffn.w2", "ffn.w3")]
    expected += ["ln_final.weight", "lm_head.weight"]
    assert sorted(sd) == sorted(expected)  # no RoPE buffers, no extras
    assert sd["token_embeddings.weight"].shape == (97, 32)
    assert sd["layers.0.ffn.w1.weight"].shape == (80, 32)  # (d_out, d_in)
    assert sd["layers.0.ffn.w2.weight"].shape == (32, 80)
    assert sd["lm_head.weight"].shape == (97, 32)


def test_logits_match_independent_forward_from_state_dict():
    model = small_model()
    # gains away from 1, so a forgotten or misplaced norm gain would show
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ln1.weight", "ln2.weight", "ln_final.weight")):
                p.uniform_(0.5, 1.5)
    ids = torch.randint(0, 97, (3, 24))
    expected = forward_from_state_dict(model.state_dict(), ids, 2, 4, 1000.0)
    with torch.no_grad():
        logits = model(ids)
    assert logits.shape == (3, 24, 97) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_weights_load_into_a_fresh_model():
    a, ids = small_model(), torch.randint(0, 97, (2, 10))
    torch.manual_seed(123)
    b = TransformerLM(ModelConfig(**SMALL).reference())
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(ids), b(ids))


@pytest.mark.parametrize("fused", [False, True])
def test_changing_a_token_never_changes_earlier_logits(fused):
    model = small_model(fused_attention=fused)
    ids = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        base = model(ids)
        for t in (0, 7, 19):
            changed = ids.clone()
            changed[:, t] = (changed[:, t] + 1) % 97
            out = model(changed)
            torch.testing.assert_close(out[:, :t], base[:, :t], atol=1e-6, rtol=0)
            assert not torch.allclose(out[:, t], base[:, t])


def test_explicit_positions_only_shift_relative_structure():
    """RoPE is relative: a window given its true positions 5..14 gives the logits of positions 0..9."""
    model = small_model()
    ids = torch.randint(0, 97, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(model(ids, positions=torch.arange(5, 15)), model(ids), atol=1e-5, rtol=1e-5)
        spread = torch.tensor([0, 2, 4, 6, 8, 10, 12, 14, 16, 18])  # distances doubled: different
        assert not torch.allclose(model(ids, positions=spread), model(ids), atol=1e-3)


def test_any_number_of_leading_dims():
    model = small_model()
    ids = torch.randint(0, 97, (2, 3, 12))
    with torch.no_grad():
        out = model(ids)
        assert out.shape == (2, 3, 12, 97)
        torch.testing.assert_close(out[1, 2], model(ids[1, 2][None])[0], atol=1e-6, rtol=1e-5)
        assert model(ids[0, 0]).shape == (12, 97)  # no batch dim at all
        pos = torch.arange(3, 15).expand(2, 3, 12)
        torch.testing.assert_close(model(ids, positions=pos), out, atol=1e-5, rtol=1e-5)


def test_too_long_input_is_rejected_clearly():
    model = small_model()
    model(torch.zeros(1, 24, dtype=torch.long))  # exactly context_length is fine
    with pytest.raises(ConfigError, match="25 tokens.*context_length is 24"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ConfigError, match="position 24"):
        model(torch.zeros(1, 4, dtype=torch.long), positions=torch.arange(21, 25))


def test_gradients_reach_every_parameter():
    model = small_model()
    ids = torch.randint(0, 97, (2, 12))
    loss = F.cross_entropy(model(ids).flatten(0, 1), ids.roll(-1, dims=1).flatten())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
