"""The recipe's model switches (QK-norm, ReLU², GELU, LayerNorm, learned positions, tied embeddings),
each against PyTorch's own layer and checked for the property that defines it; and the defaults,
which must rebuild the course's model and accept checkpoints saved before the switches existed."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.errors import CheckpointError, ConfigError
from tinylm.model import ModelConfig, TransformerLM
from tinylm.model.layers import MLP, LayerNorm
from tinylm.training.checkpoint import _config_diff, restore

BASE = dict(vocab_size=61, context_length=16, d_model=32, num_layers=2, num_heads=4)
F32 = torch.finfo(torch.float32).eps


def build(seed: int = 0, **changes) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(ModelConfig(**{**BASE, **changes}).reference())


# --- defaults: old configs and checkpoints ---------------------------------------------------------
def test_defaults_are_the_course_model():
    c = ModelConfig()
    assert (c.norm_type, c.qk_norm, c.tie_embeddings, c.position, c.ffn) == ("rms", False, False, "rope", "swiglu")
    old_keys = {"vocab_size", "context_length", "d_model", "num_layers", "num_heads", "d_ff", "rope_theta", "norm",
                "position", "ffn", "norm_eps", "fused_attention", "autocast", "compile"}
    torch.manual_seed(0)
    new = TransformerLM(ModelConfig(**BASE))
    torch.manual_seed(0)
    old = TransformerLM(ModelConfig.from_dict({k: v for k, v in ModelConfig(**BASE).to_dict().items() if k in old_keys}))
    assert new.state_dict().keys() == old.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(new.state_dict().values(), old.state_dict().values()))


def test_a_checkpoint_saved_before_the_switches_loads():
    model = build()
    old_config = {k: v for k, v in model.config.to_dict().items()
                  if k not in ("norm_type", "qk_norm", "tie_embeddings", "zero_init_residual", "logit_softcap",
                               "embed_norm")}
    assert _config_diff(old_config, model.config.to_dict()) == ""
    restore({"model": model.state_dict(), "model_config": old_config}, build(seed=1))
    # a real difference is still refused, and a missing key that is not the default too
    with pytest.raises(CheckpointError, match="qk_norm=False in checkpoint vs True"):
        restore({"model": model.state_dict(), "model_config": old_config}, build(qk_norm=True))


@pytest.mark.parametrize("field,value", [("norm_type", "batch"), ("ffn", "relu"), ("position", "alibi"),
                                         ("qk_norm", 1), ("tie_embeddings", "yes"), ("zero_init_residual", 0),
                                         ("embed_norm", "no")])
def test_bad_switches_are_config_errors(field, value):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**BASE, **{field: value})


# --- LayerNorm, GELU, ReLU² against torch ------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(d=st.integers(2, 64), scale=st.sampled_from([1e-3, 1.0, 1e3]), shift=st.sampled_from([0.0, 5.0, -300.0]),
       eps=st.sampled_from([1e-6, 1e-5, 1e-2]), seed=st.integers(0, 2**16))
def test_layer_norm_is_torchs(d, scale, shift, eps, seed):
    g = torch.Generator().manual_seed(seed)
    norm = LayerNorm(d, eps)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(d, generator=g) + 0.5)
        norm.bias.copy_(torch.randn(d, generator=g))
    x = torch.randn(3, 5, d, generator=g) * scale + shift
    want = F.layer_norm(x.double(), (d,), norm.weight.double(), norm.bias.double(), eps)
    # float32: the centred values carry |shift| · eps of rounding, relative to their spread
    tol = 64 * F32 * (1 + abs(shift) / scale) * float(norm.weight.detach().abs().max()) * math.sqrt(d)
    torch.testing.assert_close(norm(x).double(), want, atol=tol, rtol=0)


@pytest.mark.parametrize("activation,reference", [("relu2", lambda h: F.relu(h).square()), ("gelu", F.gelu),
                                                  ("silu", F.silu)])
def test_ungated_ffns_are_torchs(activation, reference):
    torch.manual_seed(0)
    ffn = MLP(16, 48, activation)
    x = torch.randn(4, 7, 16) * 3
    want = F.linear(reference(F.linear(x, ffn.w1.weight)), ffn.w2.weight)
    torch.testing.assert_close(ffn(x), want, atol=1e-5, rtol=1e-5)


def test_relu_squared_is_zero_below_zero_and_quadratic_above():
    from tinylm.model.layers import relu_squared

    x = torch.linspace(-4, 4, 81)
    torch.testing.assert_close(relu_squared(x), torch.where(x > 0, x * x, torch.zeros_like(x)))
    assert torch.equal(relu_squared(2 * x[x > 0]), 4 * relu_squared(x[x > 0]))  # degree-2 homogeneous (exact in binary)


def test_default_d_ff_of_the_ungated_ffns_is_4_d_model():
    for ffn in ("silu", "relu2", "gelu"):
        assert ModelConfig(**BASE, ffn=ffn).ffn_dim == 4 * BASE["d_model"]


# --- QK-norm ----------------------------------------------------------------------------------------
def test_qk_norm_makes_attention_blind_to_the_scale_of_wq_and_wk():
    """The defining property: queries and keys are normalised per head, so scaling W_q or W_k changes nothing."""
    ids = torch.randint(0, 61, (2, 16), generator=torch.Generator().manual_seed(0))
    for qk_norm in (True, False):
        model = build(qk_norm=qk_norm)
        with torch.no_grad():
            before = model(ids)
            for layer in model.layers:
                layer.attn.q_proj.weight.mul_(7.0)
                layer.attn.k_proj.weight.mul_(0.25)
            after = model(ids)
        if qk_norm:  # RMSNorm's eps (1e-5) against per-head mean squares of order 1: relative change ~1e-5
            torch.testing.assert_close(after, before, atol=1e-3, rtol=0)
        else:
            assert float((after - before).abs().max()) > 0.05


def test_qk_norm_normalises_each_heads_queries_before_rope():
    model = build(qk_norm=True)
    attn = model.layers[0].attn
    assert attn.q_norm.weight.shape == (BASE["d_model"] // BASE["num_heads"],)
    x = torch.randn(2, 16, 32) * 10
    q = attn.q_norm(attn._heads(attn.q_proj(x), 16))
    torch.testing.assert_close(q.pow(2).mean(-1).sqrt(), torch.ones(2, 4, 16), atol=1e-4, rtol=0)


# --- learned positions -----------------------------------------------------------------------------
def test_learned_positions_add_a_row_per_position_to_the_token_embeddings():
    model = build(position="learned", norm="none", num_layers=1)
    assert model.position_embeddings.weight.shape == (16, 32)
    assert model.layers[0].attn.rope is None
    ids = torch.randint(0, 61, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = model.token_embeddings(ids) + model.position_embeddings.weight[:10]
        torch.testing.assert_close(model(ids), model.lm_head(model.layers[0](x)))
        # explicit positions pick other rows: a window later in a text sees later positions
        shifted = model(ids, positions=torch.arange(6, 16))
        x = model.token_embeddings(ids) + model.position_embeddings.weight[6:16]
        torch.testing.assert_close(shifted, model.lm_head(model.layers[0](x)))
    with pytest.raises(ConfigError, match="context_length"):
        model(ids, positions=torch.arange(7, 17))


# --- tied embeddings -------------------------------------------------------------------------------
def test_tied_embeddings_are_one_matrix_used_twice():
    tied, untied = build(tie_embeddings=True), build(tie_embeddings=False)
    assert not hasattr(tied, "lm_head") and "lm_head.weight" not in tied.state_dict()
    assert untied.num_parameters() - tied.num_parameters() == BASE["vocab_size"] * BASE["d_model"]
    # the same function as an untied model whose head is a copy of the embedding matrix ...
    state = dict(tied.state_dict())
    state["lm_head.weight"] = state["token_embeddings.weight"].clone()
    untied.load_state_dict(state)
    ids = torch.randint(0, 61, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(tied(ids), untied(ids), atol=0, rtol=0)
    # ... and the gradient of the one matrix is the sum of the two uses' gradients
    tied(ids).logsumexp(-1).sum().backward()
    untied(ids).logsumexp(-1).sum().backward()
    want = untied.token_embeddings.weight.grad + untied.lm_head.weight.grad
    torch.testing.assert_close(tied.token_embeddings.weight.grad, want, atol=1e-5, rtol=1e-5)


def test_tied_matrix_starts_at_the_output_layers_scale():
    """Tied, the matrix is the output layer too: N(0, 1) rows would give logits of std sqrt(d_model)."""
    tied = build(tie_embeddings=True)
    assert float(tied.token_embeddings.weight.detach().std()) < 0.05
    assert float(build().token_embeddings.weight.detach().std()) > 0.5  # untied: the course's N(0, 1), unchanged


# --- zero-initialised residual branches ----------------------------------------------------------------
@pytest.mark.parametrize("ffn", ["swiglu", "relu2", "gelu", "silu"])
def test_zero_init_residual_blocks_start_as_the_identity(ffn):
    """At initialisation every block returns its input exactly, so the logits are the final norm and
    head applied to the token embeddings alone; one optimizer step later the blocks contribute."""
    model = build(zero_init_residual=True, ffn=ffn)
    ids = torch.randint(0, 61, (2, 16), generator=torch.Generator().manual_seed(1))
    x = model.token_embeddings(ids)
    with torch.no_grad():
        for layer in model.layers:
            assert torch.equal(layer(x), x)
        assert torch.equal(model(ids), model.lm_head(model.ln_final(x)))
    # only the two output projections per block start at zero; everything else as without the switch
    plain = build(ffn=ffn)
    zeroed = {n for n, p in model.named_parameters() if not torch.equal(p, dict(plain.named_parameters())[n])}
    assert zeroed == {f"layers.{i}.{m}.weight" for i in range(2) for m in ("attn.output_proj", "ffn.w2")}
    assert all(not model.get_parameter(n).any() for n in zeroed)
    torch.nn.functional.cross_entropy(model(ids).flatten(0, 1), ids.flatten()).backward()
    assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in zeroed)


# --- logit soft-capping ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cap", [0.5, 3.0, 30.0])
@pytest.mark.parametrize("tied", [False, True])
def test_logit_softcap_is_cap_tanh_of_the_uncapped_logits(cap, tied):
    """Same weights: capped logits = cap·tanh(uncapped / cap) (Gemma 2's definition), never past ±cap,
    and gradients flow through it (tanh' > 0 everywhere)."""
    capped = build(logit_softcap=cap, tie_embeddings=tied)
    plain = build(tie_embeddings=tied)
    plain.load_state_dict(capped.state_dict())
    scale = 2500.0 if tied else 50.0  # a tied matrix starts at std 0.02, an untied head at ~1/sqrt(d_model)
    with torch.no_grad():  # large logits, so the cap bites
        (capped.token_embeddings if tied else capped.lm_head).weight.mul_(scale)
        (plain.token_embeddings if tied else plain.lm_head).weight.mul_(scale)
    ids = torch.randint(0, 61, (2, 16), generator=torch.Generator().manual_seed(3))
    z = plain(ids).detach().double()
    got = capped(ids)
    want = cap * torch.tanh(z / cap)
    assert float(z.abs().max()) > 2 * cap  # the test input reaches past the cap
    assert float(got.detach().abs().max()) <= cap
    # float32 logits of size |z|: error ~ eps·|z| in z (divided by cap, times tanh' ≤ 1, times cap)
    assert torch.allclose(got.double(), want, rtol=0, atol=8 * F32 * (float(z.abs().max()) + cap))
    got.sum().backward()
    assert all(p.grad is not None for p in capped.parameters() if p.requires_grad)


def test_logit_softcap_zero_is_off_and_bad_values_are_config_errors():
    plain, off = build(), build(logit_softcap=0)
    ids = torch.randint(0, 61, (2, 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(plain(ids), off(ids))
    assert ModelConfig(**BASE, logit_softcap=15).logit_softcap == 15.0
    for bad in (-1.0, float("inf"), float("nan"), True, "30"):
        with pytest.raises(ConfigError, match="logit_softcap"):
            ModelConfig(**BASE, logit_softcap=bad)


# --- a norm on the token embeddings --------------------------------------------------------------------
@pytest.mark.parametrize("norm_type", ["rms", "layer"])
def test_embed_norm_feeds_the_first_block_a_normalised_stream(norm_type):
    """With embed_norm the first block sees norm(E[ids]), at unit scale however large the rows are
    (RMS 1 per position for RMSNorm; mean 0, variance 1 for LayerNorm); without it, E[ids] itself."""
    model = build(embed_norm=True, norm_type=norm_type)
    with torch.no_grad():
        model.token_embeddings.weight.mul_(100.0)
    ids = torch.randint(0, 61, (2, 16), generator=torch.Generator().manual_seed(5))
    seen = {}
    model.layers[0].register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0].detach()))
    with torch.no_grad():
        model(ids)
    x = seen["x"].double()
    want = model.ln_embed(model.token_embeddings(ids)).double()
    assert torch.allclose(x, want, rtol=0, atol=0)
    if norm_type == "rms":
        assert torch.allclose(x.pow(2).mean(-1).sqrt(), torch.ones(2, 16, dtype=torch.float64), atol=1e-4)
    else:
        assert torch.allclose(x.mean(-1), torch.zeros(2, 16, dtype=torch.float64), atol=1e-4)
        assert torch.allclose(x.var(-1, unbiased=False), torch.ones(2, 16, dtype=torch.float64), atol=1e-3)
    plain = build(norm_type=norm_type)
    assert not hasattr(plain, "ln_embed")
    assert set(dict(model.named_parameters())) - set(dict(plain.named_parameters())) == (
        {"ln_embed.weight"} | ({"ln_embed.bias"} if norm_type == "layer" else set()))


# --- everything together -----------------------------------------------------------------------------
@pytest.mark.parametrize("changes", [
    dict(qk_norm=True, ffn="relu2"),
    dict(norm_type="layer", ffn="gelu", position="learned", tie_embeddings=True),
])
def test_fast_path_equals_reference_path(changes):
    torch.manual_seed(0)
    fast = TransformerLM(ModelConfig(**BASE, **changes))
    ref = TransformerLM(fast.config.reference())
    ref.load_state_dict(fast.state_dict())
    ids = torch.randint(0, 61, (3, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(fast(ids), ref(ids), atol=1e-4, rtol=1e-4)
