"""Fast paths equal the from-scratch reference within stated tolerances.

fused attention: logits and gradients within 1e-5 (float32 reordering only);
bf16 autocast: logits within 0.06 + 2% (bf16 keeps ~3 significant digits), loss within 0.5%;
torch.compile: within 1e-5 (aot_eager, quick) and 1e-4 (inductor, slow: ~30 s to compile on CPU).
"""

import pytest
import torch
import torch.nn.functional as F

from tinylm.model import ModelConfig, TransformerLM

CFG = ModelConfig(vocab_size=97, context_length=32, d_model=64, num_layers=2, num_heads=4)


def pair(**fast):
    """A reference model and a fast-path model holding the same weights."""
    torch.manual_seed(0)
    ref = TransformerLM(CFG.reference())
    fast_model = TransformerLM(CFG.reference().replace(**fast))
    fast_model.load_state_dict(ref.state_dict())
    return ref, fast_model


def loss_and_grads(model, ids):
    loss = F.cross_entropy(model(ids).flatten(0, 1), ids.roll(-1, dims=-1).flatten())
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters()}


def assert_same_training_step(ref, fast, ids, atol):
    loss_r, grads_r = loss_and_grads(ref, ids)
    loss_f, grads_f = loss_and_grads(fast, ids)
    torch.testing.assert_close(loss_f, loss_r, atol=atol, rtol=0)
    for name in grads_r:
        torch.testing.assert_close(grads_f[name], grads_r[name], atol=atol, rtol=1e-4, msg=name)


def test_defaults_turn_on_fused_attention_and_cuda_only_autocast():
    c = ModelConfig()
    assert c.fused_attention and c.autocast == "auto" and not c.compile


def test_fused_attention_equals_reference():
    ref, fast = pair(fused_attention=True)
    ids = torch.randint(0, 97, (3, 32))
    with torch.no_grad():
        torch.testing.assert_close(fast(ids), ref(ids), atol=1e-5, rtol=1e-5)
    assert_same_training_step(ref, fast, ids, atol=1e-5)


def test_auto_autocast_is_float32_on_cpu():
    ref, auto = pair(autocast="auto")
    ids = torch.randint(0, 97, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(auto(ids), ref(ids), atol=0, rtol=0)


def test_bf16_autocast_close_to_reference():
    ref, fast = pair(autocast="bf16", fused_attention=True)
    ids = torch.randint(0, 97, (4, 32))
    with torch.no_grad():
        r, b = ref(ids), fast(ids)
    assert b.dtype == torch.float32  # logits come back in float32 for a stable loss
    torch.testing.assert_close(b, r, atol=0.06, rtol=0.02)
    targets = ids.roll(-1, dims=-1).flatten()
    loss_r, loss_b = (F.cross_entropy(x.flatten(0, 1), targets) for x in (r, b))
    assert abs(loss_b - loss_r) / loss_r < 0.005


def test_compiled_model_equals_reference_quick():
    """Dynamo tracing + AOT autograd, without inductor's slow C++ compile."""
    ref, fast = pair(fused_attention=True)
    fast.compile(backend="aot_eager")
    ids = torch.randint(0, 97, (2, 32))
    assert_same_training_step(ref, fast, ids, atol=1e-5)
    assert fast.state_dict().keys() == ref.state_dict().keys()  # no "_orig_mod." prefix


@pytest.mark.slow
def test_compile_flag_with_inductor_equals_reference():
    ref, fast = pair(fused_attention=True, compile=True)
    ids = torch.randint(0, 97, (2, 32))
    assert_same_training_step(ref, fast, ids, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fast_path_close_to_reference():
    torch.manual_seed(0)
    ref = TransformerLM(CFG.reference()).cuda()
    fast = TransformerLM(CFG).cuda()  # defaults: fused attention, bf16 autocast on CUDA
    fast.load_state_dict(ref.state_dict())
    ids = torch.randint(0, 97, (4, 32), device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(fast(ids), ref(ids), atol=0.06, rtol=0.02)


@pytest.mark.parametrize("switches", [{}, {"qk_norm": True, "ffn": "relu2", "d_ff": None},
                                      {"norm_type": "layer", "ffn": "gelu", "position": "learned", "tie_embeddings": True, "d_ff": None},
                                      {"autocast": "bf16"}])
def test_compiled_layers_are_one_graph_kept_across_training_and_evaluation(switches):
    """config.compile compiles the layers, not forward's Python checks: no graph break, and switching
    between training and evaluation (train/eval mode, no_grad) compiles a handful of graphs, not one per
    call (on an H200 the old graph break recompiled until dynamo's limit and then ran eagerly)."""
    torch.manual_seed(0)
    model = TransformerLM(CFG.replace(compile=True, **switches))
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    model._compiled_body = torch.compile(model._body, backend=counting_backend)
    ids = torch.randint(0, 97, (2, 32))
    for _ in range(6):
        model.train()
        model(ids).sum().backward()
        model.eval()
        with torch.no_grad():
            model(ids[:1])
    assert 1 <= len(graphs) <= 4, len(graphs)  # train+grad, eval+no_grad (+ a dynamic-shape recompile each)
    explanation = torch._dynamo.explain(model._body)(ids, None, [None] * CFG.num_layers)
    assert explanation.graph_break_count == 0, explanation.break_reasons
