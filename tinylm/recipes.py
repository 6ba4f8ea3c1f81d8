"""Named recipes: sets of `section.key = value` config overrides applied before the user's own settings.

    cs336    the course's model and optimiser (today's default, unchanged): pre-norm RMSNorm, SwiGLU,
             RoPE, untied embeddings, AdamW with a cosine schedule. An empty set of overrides, so
             results and checkpoints from before recipes existed stay reproducible.
    nanogpt  an honest GPT-2-style baseline (Karpathy's nanoGPT): LayerNorm, GELU MLP (d_ff = 4·d_model),
             learned absolute positions, tied input/output embeddings, AdamW, cosine.
    tinylm   the recipe chosen by benchmarks/bench_recipe.py at the quick start's budget (docs/EXPERIMENTS.md
             §8): Muon (lr 0.03, momentum 0.95, Nesterov, 5 Newton–Schulz steps) for the blocks' matrices,
             AdamW (β1 0.6, modded-nanogpt's short-memory Adam) for embeddings, head and gains with
             the token embedding at its own peak rate (0.2), warm-up–stable–decay schedule decaying
             over the last half, zero-initialised output projections (each block starts as the
             identity); for the quick-start model also AdamW peak lr 3e-2, no weight decay, no warm-up
             and 3 blocks instead of 4 (at the quick start's budget the shallower model's ~15% more
             steps win). QK-norm, ReLU², the z-loss, a logit soft-cap and an embedding norm are
             switches of their own (`--set`), measured in the same section, not part of it: at this
             scale they cost step time and bought nothing.

Keys are `model.*` and `optim.*` settings (switches: never shapes or AdamW's learning rate, which depend
on the model's size), and `quickstart.*` fields: the quick start's own defaults for its small model,
tuned per recipe by benchmarks/bench_recipe.py (its peak learning rate, batch size, warm-up, weight decay
and depth: tinylm.quickstart.RECIPE_TUNED_FALLBACKS). `train
--recipe` applies the `model.*` and `optim.*` keys over the config file and under the flags and `--set`;
the quick start uses its `quickstart.*` keys only where the user gave no value. So `--num-layers`, `--lr`,
`--batch-size` and `--set` given by the user always win.
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
        "model.zero_init_residual": True,
        "optim.name": "muon",
        "optim.muon_lr": 0.03,
        "optim.muon_momentum": 0.95,
        "optim.beta1": 0.6,
        "optim.embedding_lr": 0.2,
        "optim.schedule": "wsd",
        "optim.decay_fraction": 0.5,
        "quickstart.lr": 0.03,
        "quickstart.weight_decay": 0.0,
        "quickstart.warmup_fraction": 0.0,
        "quickstart.num_layers": 3,
    },
}
DEFAULT_RECIPE = "tinylm"  # the quick start's (QuickstartConfig.recipe); `train` without --recipe is cs336


def recipe_overrides(name: str) -> dict[str, Any]:
    """The `section.key -> value` overrides of the recipe `name` (a copy). Raises ConfigError for an unknown name."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    return dict(RECIPES[name])


def config_overrides(name: str) -> dict[str, Any]:
    """The recipe's TrainConfig settings (`model.*` and `optim.*` keys), e.g. for `train --recipe`."""
    return {k: v for k, v in recipe_overrides(name).items() if not k.startswith("quickstart.")}


def quickstart_defaults(name: str) -> dict[str, Any]:
    """The recipe's QuickstartConfig field values (`quickstart.` prefix removed), used where the user gave none."""
    return _section(name, "quickstart")


def model_overrides(name: str) -> dict[str, Any]:
    """The recipe's ModelConfig fields (`model.` prefix removed), e.g. for ModelConfig.replace."""
    return _section(name, "model")


def _section(name: str, section: str) -> dict[str, Any]:
    """The recipe's `section.key` settings as key -> value."""
    return {k.partition(".")[2]: v for k, v in recipe_overrides(name).items() if k.partition(".")[0] == section}
