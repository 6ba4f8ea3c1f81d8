"""KV cache: feeding positions a few at a time with a cache gives the logits of one full forward.

Tolerance: the cached and the full pass do the same arithmetic in a different order (a matrix-vector
product instead of a matrix product, a shorter softmax row), so they differ by rounding only; the
`logit_tolerance` fixture (tests/conftest.py) derives the bound from d_model, the layers and the
compute dtype: about 1e-5 here, where a wrong position, mask or cache slot moves logits by 1e-2 or more.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.errors import ConfigError
from tinylm.model import KVCache, ModelConfig, TransformerLM

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny matrices on a shared machine

BASE = ModelConfig(vocab_size=97, context_length=24, d_model=32, num_layers=2, num_heads=4, d_ff=64)

# the fast paths (fused attention; bf16 autocast), the reference path, and the model's ablations
VARIANTS = {
    "fast": {},
    "reference": {"fused_attention": False, "autocast": "none"},
    "nope": {"position": "none"},
    "nope-reference": {"position": "none", "fused_attention": False},
    "post-norm": {"norm": "post"},
    "no-norm-silu": {"norm": "none", "ffn": "silu", "d_ff": None},
    "bf16": {"autocast": "bf16"},
    "qk-norm-relu2": {"qk_norm": True, "ffn": "relu2", "d_ff": None},
    "gpt2-layernorm-learned-tied": {"norm_type": "layer", "ffn": "gelu", "position": "learned", "tie_embeddings": True},
    "embed-norm-softcap": {"embed_norm": True, "logit_softcap": 5.0},
}


def model_for(variant: str, seed: int = 0) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(BASE.replace(**VARIANTS[variant])).eval()


def cached_logits(model: TransformerLM, ids: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    """Logits of `ids` (B, T) fed through one KVCache in pieces of the given sizes."""
    cache = KVCache.for_model(model.config)
    out, start = [], 0
    for size in chunks:
        out.append(model(ids[:, start:start + size], kv_cache=cache))
        start += size
    assert cache.length == start == ids.shape[1]
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_prompt_then_one_position_at_a_time_equals_the_full_forward(variant, logit_tolerance):
    model = model_for(variant)
    ids = torch.randint(0, 97, (3, BASE.context_length), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids)
        cached = cached_logits(model, ids, [5] + [1] * (BASE.context_length - 5))
    torch.testing.assert_close(cached, full, atol=logit_tolerance(model.config, full), rtol=0)


@settings(max_examples=15, deadline=None)
@given(
    variant=st.sampled_from(sorted(VARIANTS)),
    batch=st.integers(1, 3),
    chunks=st.lists(st.integers(1, 9), min_size=1, max_size=8).filter(lambda c: sum(c) <= BASE.context_length),
    seed=st.integers(0, 2**16),
)
def test_any_split_into_chunks_equals_the_full_forward(variant, batch, chunks, seed, logit_tolerance):
    """Several new positions at once after cached ones (the masked case) as well as single ones."""
    model = model_for(variant, seed % 4)
    ids = torch.randint(0, 97, (batch, sum(chunks)), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        full = model(ids)
        cached = cached_logits(model, ids, chunks)
    torch.testing.assert_close(cached, full, atol=logit_tolerance(model.config, full), rtol=0)


def test_a_wrong_position_is_far_outside_the_tolerance(logit_tolerance):
    """The tolerance can fail: shifting the cached positions by one moves logits well past it."""
    model = model_for("fast")
    ids = torch.randint(0, 97, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids)
        cache = KVCache.for_model(model.config)
        model(ids[:, :11], kv_cache=cache)
        shifted = model(ids[:, 11:], positions=torch.tensor([12]), kv_cache=cache)
    assert (shifted[:, -1] - full[:, -1]).abs().max() > 100 * logit_tolerance(model.config, full)


def test_leading_batch_dims_share_one_cache(logit_tolerance):
    model = model_for("fast")
    ids = torch.randint(0, 97, (2, 3, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids)
        cache = KVCache.for_model(model.config)
        cached = torch.cat([model(ids[..., :4], kv_cache=cache), model(ids[..., 4:], kv_cache=cache)], dim=-2)
    torch.testing.assert_close(cached, full, atol=logit_tolerance(model.config, full), rtol=0)


def test_a_full_cache_refuses_more_positions_until_reset(logit_tolerance):
    model = model_for("fast")
    cache = KVCache.for_model(model.config)
    with torch.no_grad():
        model(torch.zeros(1, BASE.context_length, dtype=torch.long), kv_cache=cache)
        with pytest.raises(ConfigError, match="context_length"):
            model(torch.zeros(1, 1, dtype=torch.long), kv_cache=cache)
        assert cache.length == BASE.context_length  # the refused call changed nothing
        cache.reset()
        assert cache.length == 0
        ids = torch.randint(0, 97, (1, 6))
        torch.testing.assert_close(model(ids, kv_cache=cache), model(ids), atol=logit_tolerance(model.config, model(ids)), rtol=0)


def test_mismatched_caches_are_one_clear_error():
    model = model_for("fast")
    with torch.no_grad(), pytest.raises(ConfigError, match="layers"):
        model(torch.zeros(1, 2, dtype=torch.long), kv_cache=KVCache(num_layers=3, capacity=24))
    cache = KVCache.for_model(model.config)
    with torch.no_grad():
        model(torch.zeros(2, 2, dtype=torch.long), kv_cache=cache)
        with pytest.raises(ConfigError, match="do not match"):
            model(torch.zeros(3, 1, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ConfigError, match="capacity"):
        KVCache(num_layers=2, capacity=0)


@pytest.mark.slow
def test_compiled_model_with_a_cache_equals_the_reference(logit_tolerance):
    """torch.compile (aot_eager: dynamo + AOT autograd) traces the cached forward too (~10 s)."""
    ref = model_for("reference")
    fast = TransformerLM(BASE).eval()
    fast.load_state_dict(ref.state_dict())
    fast.compile(backend="aot_eager")
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = ref(ids)
        cached = cached_logits(fast, ids, [4, 1, 1, 1, 5])
    torch.testing.assert_close(cached, full, atol=logit_tolerance(ref.config, full), rtol=0)


