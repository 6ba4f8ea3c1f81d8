"""Named recipes: sets of `section.key = value` config overrides applied before the user's own settings.

    cs336    the course's model and optimiser (today's default, unchanged): pre-norm RMSNorm, SwiGLU,
             RoPE, untied embeddings, AdamW with a cosine schedule. An empty set of overrides, so
             results and checkpoints from before recipes existed stay reproducible.
    nanogpt  an honest GPT-2-style baseline (Karpathy's nanoGPT): LayerNorm, GELU MLP (d_ff = 4·d_model),
             learned absolute positions, tied input/output embeddings, AdamW, cosine.
    tinylm   the modern recipe measured by benchmarks/bench_recipe.py (docs/EXPERIMENTS.md): Muon for the
             blocks' matrices (AdamW for embeddings, head and gains), QK-norm, ReLU² feed-forward,
             warm-up–stable–decay schedule, z-loss.

Recipes only choose switches (never shapes or learning rates of AdamW), so `--d-model`, `--lr`, and
`--set` given by the user still apply, on top of the recipe.
"""

from __future__ import annotations

from typing import Any

from tinylm.errors import ConfigError

RECIPES: dict[str, dict[str, Any]] = {
    "cs336": {},
    "nanogpt": {
        "model.norm_type": "layer",
        "model.ffn": "gelu",
        "model.position": "learned",
        "model.tie_embeddings": True,
        "optim.name": "adamw",
    },
    "tinylm": {
        "model.qk_norm": True,
        "model.ffn": "relu2",
        "optim.name": "muon",
        "optim.muon_lr": 0.02,
        "optim.muon_momentum": 0.95,
        "optim.schedule": "wsd",
        "optim.decay_fraction": 0.3,
        "optim.z_loss": 1e-4,
    },
}
DEFAULT_RECIPE = "cs336"


def recipe_overrides(name: str) -> dict[str, Any]:
    """The `section.key -> value` overrides of the recipe `name` (a copy). Raises ConfigError for an unknown name."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    return dict(RECIPES[name])


def model_overrides(name: str) -> dict[str, Any]:
    """The recipe's ModelConfig fields (`model.` prefix removed), e.g. for ModelConfig.replace."""
    return {key.partition(".")[2]: value for key, value in recipe_overrides(name).items() if key.startswith("model.")}
