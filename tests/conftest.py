"""Shared test helpers: fixture paths."""

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def logit_tolerance():
    """logit_tolerance(config, logits) -> the largest difference rounding alone explains between two
    evaluations of the same logits that order the arithmetic differently (a KV-cached decode step vs
    a full forward): each dot product of length d_model carries about sqrt(d_model) ulps of relative
    error, compounding once per layer, relative to the largest logit; 16 times that is allowed
    (about 1e-5 in float32 for the tests' tiny models, where a wrong position or mask moves logits
    by 1e-2 or more). bf16 autocast uses bf16's ulp."""
    import math

    import torch

    def tolerance(config, logits) -> float:
        dtype = torch.bfloat16 if config.autocast == "bf16" else torch.float32
        scale = max(1.0, float(logits.abs().max()))
        return 16 * torch.finfo(dtype).eps * math.sqrt(config.d_model) * config.num_layers * scale

    return tolerance
