"""Loss, AdamW, schedule and clipping against PyTorch's own implementations."""

import math

import pytest
import torch
import torch.nn.functional as F

from tinylm.training import AdamW, clip_grad_norm, cosine_lr, cross_entropy


@pytest.mark.parametrize("shape", [(8,), (3, 5), (2, 3, 4)])
def test_cross_entropy_matches_torch_with_leading_dims(shape):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(*shape, 50, generator=gen) * 3
    targets = torch.randint(50, shape, generator=gen)
    expected = F.cross_entropy(logits.reshape(-1, 50), targets.reshape(-1))
    torch.testing.assert_close(cross_entropy(logits, targets), expected)


def test_cross_entropy_is_stable_for_huge_logits():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 6, 20, generator=gen) * 1e4
    logits[0, 0, 3] = 1e4
    logits[1, 2, 7] = -1e4
    targets = torch.randint(20, (4, 6), generator=gen)
    got = cross_entropy(logits, targets)
    assert torch.isfinite(got)
    torch.testing.assert_close(got, F.cross_entropy(logits.reshape(-1, 20), targets.reshape(-1)))


def test_cross_entropy_gradient_matches_torch():
    logits = torch.randn(3, 4, 10, generator=torch.Generator().manual_seed(2), requires_grad=True)
    targets = torch.randint(10, (3, 4), generator=torch.Generator().manual_seed(3))
    cross_entropy(logits, targets).backward()
    ours = logits.grad.clone()
    logits.grad = None
    F.cross_entropy(logits.reshape(-1, 10), targets.reshape(-1)).backward()
    torch.testing.assert_close(ours, logits.grad)


def _train_with(optimizer_cls, weight_decay, steps=100):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    opt = optimizer_cls(model.parameters(), lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(32, 8, generator=gen)
        y = torch.randint(4, (32,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_matches_torch_over_100_steps(weight_decay):
    ours = _train_with(AdamW, weight_decay)
    ref = _train_with(torch.optim.AdamW, weight_decay)
    for a, b in zip(ours, ref):
        assert (a - b).abs().max().item() < 1e-6


def test_adamw_state_is_plain_and_reloads():
    p = torch.nn.Parameter(torch.ones(3))
    opt = AdamW([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.step()
    state = opt.state_dict()
    assert state["state"][0]["step"] == 1
    opt2 = AdamW([torch.nn.Parameter(torch.ones(3))], lr=0.1)
    opt2.load_state_dict(state)
    assert opt2.state_dict()["state"][0]["step"] == 1


def test_cosine_lr_warmup_decay_and_floor():
    kw = dict(lr_max=1.0, lr_min=0.1, warmup_iters=10, cosine_iters=110)
    assert cosine_lr(0, **kw) == 0.0
    assert cosine_lr(5, **kw) == pytest.approx(0.5)
    assert cosine_lr(10, **kw) == pytest.approx(1.0)
    assert cosine_lr(60, **kw) == pytest.approx(0.55)  # half-way down the cosine
    assert cosine_lr(35, **kw) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert cosine_lr(110, **kw) == pytest.approx(0.1)
    assert cosine_lr(111, **kw) == 0.1
    assert cosine_lr(10_000, **kw) == 0.1
    assert cosine_lr(0, 1.0, 0.1, 0, 100) == 1.0  # no warm-up: starts at the peak
    assert cosine_lr(0, 1.0, 0.1, 0, 0) == 0.1  # no decay window: already at the floor


@pytest.mark.parametrize("max_norm", [0.01, 1.0, 1e6])
def test_clip_grad_norm_matches_torch(max_norm):
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in [(4, 5), (7,), (2, 3, 3)]]
    grads = [torch.randn(p.shape, generator=gen) for p in params]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, r, g in zip(params, ref, grads):
        p.grad, r.grad = g.clone(), g.clone()
    params.append(torch.nn.Parameter(torch.zeros(2)))  # no grad: skipped, as torch does
    norm = clip_grad_norm(params, max_norm)
    ref_norm = torch.nn.utils.clip_grad_norm_(ref, max_norm)
    torch.testing.assert_close(norm, ref_norm)
    for p, r in zip(params, ref):
        torch.testing.assert_close(p.grad, r.grad)
    if max_norm < ref_norm:
        total = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params[:3]]))
        assert total.item() == pytest.approx(max_norm, rel=1e-4)


def test_foreach_paths_compute_the_loop_update():
    """The GPU (multi-tensor) AdamW and clipping, forced on CPU, give the per-tensor loop's numbers."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 5), (7,), (2, 3, 3)]
    start = [torch.randn(s, generator=gen) for s in shapes]
    runs = []
    for foreach in (False, True):
        params = [torch.nn.Parameter(x.clone()) for x in start]
        opt = AdamW(params, lr=0.1, betas=(0.9, 0.95), weight_decay=0.1, foreach=foreach)
        g = torch.Generator().manual_seed(1)
        norms = []
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            norms.append(clip_grad_norm(params, 0.5, foreach=foreach))
            opt.step()
        runs.append((params, norms, opt.state_dict()))
    (a, na, sa), (b, nb, sb) = runs
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(torch.stack(na), torch.stack(nb))
    assert sa["state"][0]["step"] == sb["state"][0]["step"] == 3
