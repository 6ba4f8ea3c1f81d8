"""Muon (Newton–Schulz orthogonalisation against the SVD's polar factor; the update against Keller
Jordan's reference; exact resume), the warm-up–stable–decay schedule and the z-loss, each by its
defining property; and the optimiser settings of TrainConfig."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm.errors import ConfigError
from tinylm.training.loop import train
from tinylm.training.checkpoint import read_checkpoint
from tinylm.training.config import OptimConfig, TrainConfig
from tinylm.training.optim import (
    CUBIC_NS_COEFFICIENTS,
    MUON_NS_COEFFICIENTS,
    AdamW,
    Muon,
    cosine_lr,
    cross_entropy,
    cross_entropy_with_z_loss,
    newton_schulz_orthogonalize,
    wsd_budget_lr,
    wsd_lr,
)


# --- Newton–Schulz against the SVD ------------------------------------------------------------------
def scalar_iteration(x: np.ndarray, steps: int, coefficients=MUON_NS_COEFFICIENTS) -> np.ndarray:
    """What the matrix iteration does to each singular value x (in float64)."""
    a, b, c = coefficients
    for _ in range(steps):
        x = a * x + b * x**3 + c * x**5
    return x


def quintic_reach() -> float:
    """The smallest normalised singular value that 5 quintic steps bring into [0.6, 1.2] (and every
    larger one too): found on a fine grid of the scalar iteration, not assumed."""
    x = np.linspace(1e-5, 1.0, 400_001)
    y = scalar_iteration(x, 5)
    outside = x[(y < 0.6) | (y > 1.2)]
    return float(outside.max()) if outside.size else 0.0


def matrix_with_singular_values(m: int, n: int, s: np.ndarray, seed: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(G = U diag(s) Vᵀ as float32, U, Vᵀ) with random orthonormal U (m×k) and V (n×k), k = min(m, n)."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return torch.tensor(u @ np.diag(s) @ v.T, dtype=torch.float32), u, v.T


@settings(max_examples=25, deadline=None)
@given(m=st.integers(2, 48), n=st.integers(2, 48), condition=st.floats(1.0, 50.0), seed=st.integers(0, 2**16))
def test_quintic_newton_schulz_maps_each_singular_value_like_the_scalar_polynomial(m, n, condition, seed):
    """The whole kind: any shape (wide, tall, square), any conditioning within the iteration's reach.

    The output is U p⁵(S/‖G‖_F) Vᵀ: the singular vectors of G's polar factor U Vᵀ (from the SVD), the
    singular values those of the scalar iteration. Float32 arithmetic on values of order 1 over
    5 steps of products of length min(m, n): tolerance 1e-4 (a wrong coefficient moves them by 1e-2).
    """
    k = min(m, n)
    rng = np.random.default_rng(seed)
    s = np.sort(rng.uniform(1.0 / condition, 1.0, k))[::-1]
    s[0] = 1.0
    g, u, vt = matrix_with_singular_values(m, n, s, seed)
    normalised = s / np.linalg.norm(s)
    want = u @ np.diag(scalar_iteration(normalised, 5)) @ vt
    got = newton_schulz_orthogonalize(g, steps=5).double().numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_quintic_output_singular_values_lie_in_its_known_band():
    """Keller Jordan's coefficients trade exactness for speed: after 5 steps every singular value
    that started above the iteration's reach lies in [0.6, 1.2] (not at 1)."""
    reach = quintic_reach()
    assert 0 < reach < 0.01  # the steep start: a = 3.4445 lifts tiny singular values fast
    for seed, (m, n) in enumerate([(32, 32), (16, 64), (96, 24)]):
        k = min(m, n)
        # normalised singular values from 2·reach to 1/sqrt(k) (the largest a unit-Frobenius matrix can spread)
        s = np.geomspace(1.0, 2 * reach * np.sqrt(k), k)
        g, _, _ = matrix_with_singular_values(m, n, s, seed)
        assert float(s.min() / np.linalg.norm(s)) >= 2 * reach * 0.99
        sv = torch.linalg.svdvals(newton_schulz_orthogonalize(g, steps=5).double())
        assert float(sv.min()) >= 0.6 - 1e-4 and float(sv.max()) <= 1.2 + 1e-4, sv
        assert float((sv - 1).abs().max()) > 0.05  # and indeed only approximately orthogonal


@pytest.mark.parametrize("shape", [(24, 24), (12, 40), (40, 12)])
def test_cubic_newton_schulz_converges_to_the_exact_polar_factor(shape):
    """With the classic cubic coefficients and more steps the same routine gives U Vᵀ of the SVD.

    Condition number 10 and Frobenius normalisation put σ_min/‖G‖_F above 0.01: the cubic step
    multiplies small values by 1.5, so ~12 steps reach 0.5 and a few more converge quadratically;
    40 steps leave float32 rounding only (tolerance 1e-5 on entries of a matrix of norm 1).
    """
    m, n = shape
    s = np.linspace(1.0, 0.1, min(m, n))
    g, u, vt = matrix_with_singular_values(m, n, s, seed=3)
    uu, _, vvt = torch.linalg.svd(g.double(), full_matrices=False)
    polar = (uu @ vvt).float()
    torch.testing.assert_close(torch.tensor(u @ vt, dtype=torch.float32), polar, atol=1e-5, rtol=0)
    got = newton_schulz_orthogonalize(g, steps=40, coefficients=CUBIC_NS_COEFFICIENTS)
    torch.testing.assert_close(got, polar, atol=1e-5, rtol=0)
    # five quintic steps are only near it
    assert float((newton_schulz_orthogonalize(g, steps=5) - polar).abs().max()) > 1e-3


# --- the Muon update ----------------------------------------------------------------------------------
def reference_muon_update(grad, momentum, beta=0.95, ns_steps=5):
    """github.com/KellerJordan/Muon muon.py `muon_update` (nesterov=True), transcribed, in float32."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    momentum.lerp_(grad, 1 - beta)
    update = grad.lerp(momentum, beta)
    X = update.float()
    if update.size(-2) > update.size(-1):
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(ns_steps):
        A = X @ X.mT
        B = b * A + c * A @ A
        X = a * X + B @ X
    if update.size(-2) > update.size(-1):
        X = X.mT
    return X * max(1, grad.size(-2) / grad.size(-1)) ** 0.5


def test_muon_step_is_the_reference_update_and_adamw_groups_are_adamw():
    torch.manual_seed(0)
    wide, tall, gain = torch.randn(8, 20), torch.randn(20, 8), torch.randn(20)
    params = [torch.nn.Parameter(t.clone()) for t in (wide, tall, gain)]
    twin = torch.nn.Parameter(gain.clone())
    opt = Muon([{"params": params[:2], "use_muon": True, "lr": 0.02, "weight_decay": 0.01, "momentum": 0.95},
                {"params": [params[2]], "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.95))
    adamw = AdamW([twin], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0)
    want = [wide.clone(), tall.clone()]
    momenta = [torch.zeros_like(w) for w in want]
    for step in range(3):
        grads = [torch.randn_like(p) for p in params]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        twin.grad = grads[2].clone()
        opt.step()
        adamw.step()
        for i in range(2):
            want[i].mul_(1 - 0.02 * 0.01).add_(reference_muon_update(grads[i], momenta[i]), alpha=-0.02)
            torch.testing.assert_close(params[i].data, want[i], atol=1e-6, rtol=0)
        assert torch.equal(params[2].data, twin.data)  # the AdamW group: bit for bit this module's AdamW


def test_muon_refuses_non_matrices():
    with pytest.raises(ValueError, match="2-D"):
        Muon([{"params": [torch.nn.Parameter(torch.zeros(3))], "use_muon": True}])


def test_trainer_gives_muon_the_block_matrices_and_adamw_the_rest(make_config):
    from tinylm.training.loop import Trainer

    trainer = Trainer(make_config(**{"optim.name": "muon"}))
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    muon = [names[id(p)] for g in trainer.optimizer.param_groups if g.get("use_muon") for p in g["params"]]
    others = [names[id(p)] for g in trainer.optimizer.param_groups if not g.get("use_muon") for p in g["params"]]
    assert muon and all(n.startswith("layers.") and n.endswith(("proj.weight", "w1.weight", "w2.weight", "w3.weight"))
                        for n in muon)
    assert {"token_embeddings.weight", "lm_head.weight"} <= set(others)
    assert len(muon) + len(others) == len(names)
    # the schedule scales Muon's rate with AdamW's: lr × muon_lr / lr_max
    lr = trainer.set_lr()
    for g in trainer.optimizer.param_groups:
        assert g["lr"] == pytest.approx(lr * 0.02 / 3e-3 if g.get("use_muon") else lr)


@pytest.mark.parametrize("name", ["adamw", "muon"])
def test_embedding_lr_gives_the_token_embedding_its_own_scheduled_rate(make_config, name):
    from tinylm.training.loop import Trainer

    trainer = Trainer(make_config(**{"optim.name": name, "optim.embedding_lr": 0.3, "optim.warmup_iters": 2}))
    emb = trainer.model.token_embeddings.weight
    groups = [g for g in trainer.optimizer.param_groups if any(p is emb for p in g["params"])]
    assert len(groups) == 1 and groups[0]["params"] == [emb] and groups[0]["weight_decay"] == 0.1
    for _ in range(3):  # warm-up and after: always lr × embedding_lr / lr_max, the rest at lr
        lr = trainer.set_lr()
        for g in trainer.optimizer.param_groups:
            want = lr * 0.3 / 3e-3 if g is groups[0] else lr * 0.02 / 3e-3 if g.get("use_muon") else lr
            assert g["lr"] == pytest.approx(want)
        trainer.step += 1
    # the defining property: at embedding_lr 0 one step moves every weight but the embedding
    trainer = Trainer(make_config(**{"optim.name": name, "optim.embedding_lr": 0.0, "optim.warmup_iters": 0}))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.set_lr()
    trainer.forward_backward(trainer.draw_batch())
    trainer.optimizer_step()
    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert "token_embeddings.weight" not in moved and "lm_head.weight" in moved
    # unset: one group for every decayed matrix, as before the setting existed
    trainer = Trainer(make_config(**{"optim.name": name}))
    assert not any(g.get("role") for g in trainer.optimizer.param_groups)


def _stop_at(k):
    return lambda step, record: step >= k


@pytest.mark.parametrize("changes", [
    {"optim.name": "muon", "optim.schedule": "wsd", "optim.z_loss": 1e-3},
    {"optim.name": "muon", "model.qk_norm": True, "model.ffn": "relu2", "model.d_ff": None},
    {"optim.name": "muon", "optim.embedding_lr": 0.05, "model.zero_init_residual": True, "optim.schedule": "wsd"},
])
def test_resume_with_muon_is_bit_exact(make_config, tmp_path, changes):
    n, k = 8, 3
    full = train(make_config(**{**changes, "train.max_steps": n, "train.out_dir": str(tmp_path / "full")}))
    cfg = make_config(**{**changes, "train.max_steps": n, "train.out_dir": str(tmp_path / "split")})
    assert train(cfg, on_step=_stop_at(k)).step == k
    assert train(cfg, resume=True).step == n
    a, b = read_checkpoint(full.out_dir), read_checkpoint(tmp_path / "split")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    buffers = [s["momentum_buffer"] for s in a["optimizer"]["state"].values() if "momentum_buffer" in s]
    assert buffers
    for i, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][i][name])), (i, name)


# --- warm-up–stable–decay ------------------------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(total=st.integers(2, 500), warmup=st.integers(0, 50), decay_fraction=st.floats(0.01, 1.0),
       lr_max=st.floats(1e-5, 1.0), ratio=st.floats(0.0, 1.0))
def test_wsd_is_warmup_then_flat_then_a_linear_decay_to_lr_min(total, warmup, decay_fraction, lr_max, ratio):
    lr_min = lr_max * ratio
    warmup = min(warmup, total)
    lrs = [wsd_lr(it, lr_max, lr_min, warmup, total, decay_fraction) for it in range(total + 3)]
    decay_start = total * (1 - decay_fraction)
    for it, lr in enumerate(lrs):
        if it < warmup:  # the warm-up is the cosine's
            assert lr == cosine_lr(it, lr_max, lr_min, warmup, total)
        elif it <= decay_start:  # stable: exactly lr_max
            assert lr == lr_max
        elif it <= total:  # linear: on the line from (decay_start, lr_max) to (total, lr_min)
            want = lr_max + (lr_min - lr_max) * (it - decay_start) / (total - decay_start)
            assert lr == pytest.approx(want, rel=1e-9, abs=1e-12)
        else:
            assert lr == pytest.approx(lr_min, rel=1e-12, abs=1e-15)
    assert lrs[total] == pytest.approx(lr_min, rel=1e-12, abs=1e-15)
    after = lrs[max(warmup, 1):]
    assert all(x >= y - 1e-15 for x, y in zip(after, after[1:]))  # never rises after the warm-up


def test_wsd_over_a_wall_clock_budget_follows_the_elapsed_fraction():
    """Past the warm-up the fraction of the budget plays the part of it/total_iters."""
    for fraction in np.linspace(0, 1.2, 25):
        f = min(float(fraction), 1.0)
        want = 1.0 if f <= 0.75 else 1.0 + (0.1 - 1.0) * (f - 0.75) / 0.25
        assert wsd_budget_lr(100, float(fraction), 1.0, 0.1, 10, 0.25) == pytest.approx(want, abs=1e-12)
        if f * 1000 >= 10:  # past the warm-up
            assert wsd_lr(round(f * 1000), 1.0, 0.1, 10, 1000, 0.25) == pytest.approx(want, abs=1e-12)
    assert wsd_budget_lr(5, 0.9, 1.0, 0.1, 10, 0.25) == 0.5  # warm-up by steps, as budget_lr


@settings(max_examples=50, deadline=None)
@given(total=st.integers(2, 500), decay_fraction=st.floats(0.01, 1.0), lr_max=st.floats(1e-5, 1.0),
       ratio=st.floats(0.0, 1.0))
def test_wsd_sqrt_cooldown_is_one_minus_sqrt_of_the_decay_done(total, decay_fraction, lr_max, ratio):
    """Hägele et al. 2024's 1 − sqrt cooldown: the same stable part and end points as the linear one,
    lr_min + (lr_max − lr_min)(1 − sqrt(t)) between them, so at or below the linear decay (it drops
    faster at first), and never rising."""
    lr_min = lr_max * ratio
    decay_start = total * (1 - decay_fraction)
    lrs = [wsd_lr(it, lr_max, lr_min, 0, total, decay_fraction, "sqrt") for it in range(total + 3)]
    for it, lr in enumerate(lrs):
        linear = wsd_lr(it, lr_max, lr_min, 0, total, decay_fraction)
        if it <= decay_start:
            assert lr == lr_max == linear
        elif it <= total:
            t = (it - decay_start) / (total - decay_start)
            assert lr == pytest.approx(lr_min + (lr_max - lr_min) * (1 - math.sqrt(t)), rel=1e-9, abs=1e-12)
            assert lr <= linear + 1e-12 * lr_max
    assert lrs[total] == pytest.approx(lr_min, rel=1e-12, abs=1e-15)
    assert all(x >= y - 1e-15 for x, y in zip(lrs, lrs[1:]))
    assert wsd_budget_lr(100, 0.9, 1.0, 0.1, 10, 0.4, "sqrt") == pytest.approx(0.1 + 0.9 * (1 - math.sqrt(0.75)))
    with pytest.raises(ValueError, match="decay_shape"):
        wsd_lr(total, lr_max, lr_min, 0, total, 1.0, "cosine")


def test_a_bad_decay_shape_is_a_config_error(make_config):
    with pytest.raises(ConfigError, match="optim.decay_shape"):
        make_config(**{"optim.schedule": "wsd", "optim.decay_shape": "exp"})


@pytest.mark.parametrize("shape", ["linear", "sqrt"])
def test_trainer_runs_the_wsd_schedule(make_config, shape):
    from tinylm.training.loop import Trainer

    trainer = Trainer(make_config(**{"optim.schedule": "wsd", "optim.decay_fraction": 0.5, "train.max_steps": 8,
                                     "optim.decay_shape": shape}))
    lrs = []
    for step in range(8):
        trainer.step = step
        lrs.append(trainer.set_lr())
    assert lrs == [wsd_lr(i + 1, 3e-3, 3e-4, 2, 8, 0.5, shape) for i in range(8)]
    assert (lrs[5] < wsd_lr(6, 3e-3, 3e-4, 2, 8, 0.5)) == (shape == "sqrt")
    assert lrs[1:4] == [3e-3] * 3 and lrs[-1] == pytest.approx(3e-4)


# --- z-loss -----------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(v=st.integers(2, 50), n=st.integers(1, 20), scale=st.sampled_from([0.1, 1.0, 30.0]),
       coef=st.sampled_from([0.0, 1e-4, 0.1]), seed=st.integers(0, 2**16))
def test_z_loss_is_cross_entropy_plus_coef_times_mean_squared_log_normaliser(v, n, scale, coef, seed):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, v, generator=g, dtype=torch.float64) * scale).requires_grad_()
    targets = torch.randint(0, v, (n,), generator=g)
    total, ce = cross_entropy_with_z_loss(logits, targets, coef)
    lse = torch.logsumexp(logits.detach(), -1)
    want_ce = F.cross_entropy(logits.detach(), targets)
    torch.testing.assert_close(ce.double(), want_ce, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(total.double(), want_ce + coef * lse.square().mean(), rtol=1e-6, atol=1e-6)
    # its gradient: (softmax - onehot)/n from the CE plus 2·coef·lse·softmax/n: it pulls log Z to 0
    total.backward()
    p = torch.softmax(logits.detach(), -1)
    want = (p - F.one_hot(targets, v) + 2 * coef * lse[:, None] * p) / n
    # computed in float32: exp(x - lse) carries eps·|x| of relative error, times the factor (1 + 2·coef·|lse|)
    eps32 = torch.finfo(torch.float32).eps
    tol = 8 * eps32 * (1 + float(logits.detach().abs().max())) * (1 + 2 * coef * float(lse.abs().max())) / n
    torch.testing.assert_close(logits.grad, want, rtol=0, atol=tol)


def test_z_loss_is_the_one_term_that_sees_a_shift_of_all_logits():
    logits, targets = torch.randn(6, 11), torch.randint(0, 11, (6,))
    (a_total, a_ce), (b_total, b_ce) = (cross_entropy_with_z_loss(x, targets, 0.1) for x in (logits, logits + 5.0))
    torch.testing.assert_close(a_ce, b_ce)  # softmax is shift-invariant ...
    assert float(b_total - a_total) > 0.1 * 4  # ... log Z is not: (lse+5)² - lse² ≥ 5·(2·lse + 5) > 0
    assert torch.equal(cross_entropy_with_z_loss(logits, targets, 0.0)[0], cross_entropy(logits, targets))


def test_trainer_logs_the_cross_entropy_and_trains_on_it_plus_the_z_loss(make_config, tmp_path):
    import json

    from tinylm.training.loop import Trainer

    trainer = Trainer(make_config(**{"optim.z_loss": 0.5, "train.out_dir": str(tmp_path / "z")}))
    batches = trainer.draw_batch()
    with torch.no_grad():
        logits = trainer.model(batches[0][0])
    ce = cross_entropy(logits, batches[0][1])
    logged = trainer.forward_backward(batches)
    torch.testing.assert_close(logged, ce, rtol=1e-5, atol=1e-6)
    z_grad = trainer.model.lm_head.weight.grad.clone()
    trainer.model.zero_grad(set_to_none=True)
    trainer.config.optim.z_loss = 0.0
    trainer.forward_backward(batches)
    assert not torch.allclose(trainer.model.lm_head.weight.grad, z_grad)
    del json


# --- configuration ----------------------------------------------------------------------------------------
def test_optimiser_defaults_are_todays():
    o = OptimConfig()
    assert (o.name, o.schedule, o.z_loss) == ("adamw", "cosine", 0.0)


def test_an_old_optim_section_loads_with_the_defaults(make_config):
    old = make_config().to_dict()
    for key in ("name", "muon_lr", "muon_momentum", "muon_weight_decay", "muon_ns_steps", "schedule", "decay_fraction", "z_loss"):
        del old["optim"][key]
    assert TrainConfig.from_dict(old).optim == make_config().optim


@pytest.mark.parametrize("overrides,message", [
    ({"optim.name": "sgd"}, "optim.name"),
    ({"optim.schedule": "linear"}, "optim.schedule"),
    ({"optim.decay_fraction": 0.0}, "optim.decay_fraction"),
    ({"optim.decay_fraction": 1.5}, "optim.decay_fraction"),
    ({"optim.muon_momentum": 1.0}, "optim.muon_momentum"),
    ({"optim.muon_lr": -1.0}, "optim.muon_lr"),
    ({"optim.z_loss": float("nan")}, "optim.z_loss"),
    ({"optim.muon_ns_steps": 0}, "optim.muon_ns_steps"),
    ({"optim.embedding_lr": -0.1}, "optim.embedding_lr"),
    ({"optim.embedding_lr": float("inf")}, "optim.embedding_lr"),
])
def test_bad_optimiser_settings_are_config_errors(make_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(**overrides)


def test_batched_newton_schulz_orthogonalises_each_matrix_on_its_own():
    """Muon stacks the weights of one shape into one batch: each result must be that matrix's own."""
    from tinylm.training.optim import newton_schulz_orthogonalize

    g = torch.randn(5, 24, 40, generator=torch.Generator().manual_seed(0)) * torch.tensor([1e-3, 1.0, 10.0, 1e2, 1e-6]).view(5, 1, 1)
    batched = newton_schulz_orthogonalize(g)
    for i in range(len(g)):
        # the same float32 operations in another order (batched products): rounding only, ~1e-6 of a unit-scale result
        torch.testing.assert_close(batched[i], newton_schulz_orthogonalize(g[i]), atol=1e-5, rtol=0)
    tall = newton_schulz_orthogonalize(g.mT)
    torch.testing.assert_close(tall, batched.mT, atol=1e-5, rtol=0)
    from tinylm.training.optim import orthogonalize_all  # what Muon calls: batched on a GPU, one at a time on the CPU

    for a, b in zip(orthogonalize_all(list(g), batched=True), orthogonalize_all(list(g), batched=False)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_newton_schulz_is_batched_on_the_cpu_only_with_threads_to_share():
    from tinylm.training.optim import _batch_newton_schulz

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert not _batch_newton_schulz(torch.device("cpu"))
        torch.set_num_threads(2)
        assert _batch_newton_schulz(torch.device("cpu"))
        assert _batch_newton_schulz(torch.device("cuda"))  # a device type, no GPU needed
    finally:
        torch.set_num_threads(threads)
