"""The recipes, Muon and the KV cache on a CUDA device (skipped without one; `make bench-gpu` runs them).

On CUDA the model runs under bf16 autocast by default and the trainer never waits for the device
inside a step, so these check what the CPU suite cannot: each named recipe trains (finite, falling
loss) on the GPU path, Muon's Newton–Schulz iteration gives the CPU's result, and cached generation
gives full recomputation's tokens.
"""

import numpy as np
import pytest
import torch

from tinylm.generate import generate_ids
from tinylm.model import ModelConfig, TransformerLM
from tinylm.recipes import RECIPES, config_overrides
from tinylm.training.config import TrainConfig
from tinylm.training.loop import Trainer
from tinylm.training.optim import newton_schulz_orthogonalize

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_each_recipe_trains_on_cuda(recipe, tmp_path):
    # a learnable stream: a repeating sequence of 61 tokens (loss can fall far below ln 97)
    np.save(tmp_path / "tokens.npy", np.tile(np.arange(61, dtype=np.uint16), 400))
    config = TrainConfig.from_dict({
        "model": {"vocab_size": 97, "context_length": 32, "d_model": 64, "num_layers": 2, "num_heads": 4},
        "data": {"train": str(tmp_path / "tokens.npy"), "val": str(tmp_path / "tokens.npy")},
        "optim": {"lr_max": 3e-3, "warmup_iters": 5},
        "train": {"batch_size": 16, "max_steps": 60, "eval_interval": 60, "eval_windows": 16, "log_interval": 10,
                  "device": "cuda", "out_dir": str(tmp_path / "run"), "progress": False},
    }).with_overrides(config_overrides(recipe))
    trainer = Trainer(config)
    result = trainer.run()
    losses = [float(line.split('"train_loss": ')[1].split(",")[0])
              for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"train_loss"' in line]
    assert result.step == 60 and all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses  # a repeating stream is learned, whatever the recipe
    assert np.isfinite(result.val_loss)


def test_newton_schulz_on_cuda_matches_the_cpu():
    g = torch.randn(96, 160, generator=torch.Generator().manual_seed(0))
    cpu = newton_schulz_orthogonalize(g)
    gpu = newton_schulz_orthogonalize(g.cuda()).cpu()
    # float32 on both; TF32 matmuls on CUDA (if enabled) round inputs to 10 mantissa bits: allow 1e-2
    # of the result's scale (its singular values are ~1), far below the change one NS step makes
    torch.testing.assert_close(gpu, cpu, atol=1e-2, rtol=0)


def test_cached_generation_on_cuda_gives_the_recomputed_tokens():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=97, context_length=24, d_model=64, num_layers=2, num_heads=4, autocast="none")
    model = TransformerLM(config).cuda().eval()
    prompt = [5, 17, 42]
    cached = list(generate_ids(model, prompt, 40, temperature=0.0, use_cache=True))
    recomputed = list(generate_ids(model, prompt, 40, temperature=0.0, use_cache=False))
    assert cached == recomputed and len(cached) == 40  # past context 24: the window refills the cache
