"""Shared test helpers: fixture paths; the tokenizer cache in a folder of the test session's own."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_configure(config):
    """Tokenizers loaded by the tests (and the CLI processes they start) are cached in a fresh
    folder, never in the user's ~/.cache (tinylm.tokenizer.load_cache)."""
    config._tinylm_cache = os.environ["TINYLM_CACHE_DIR"] = tempfile.mkdtemp(prefix="tinylm-test-cache-")


def pytest_unconfigure(config):
    folder = getattr(config, "_tinylm_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny models: on a shared 2-core machine contended OpenMP
    threads spin, and one thread ran these ops 10-20x faster. The previous count is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def logit_tolerance():
    """logit_tolerance(config, logits) -> the largest difference rounding alone explains between two
    evaluations of the same logits that order the arithmetic differently (a KV-cached decode step vs
    a full forward), relative to the largest logit.

    float32: each dot product of length d_model carries about sqrt(d_model) ulps of relative error,
    compounding once per layer; 16 times that is allowed (about 1e-5 for the tests' tiny models,
    where a wrong position or mask moves logits by 1e-2 or more). bf16 autocast accumulates in
    float32 and rounds each layer's outputs to bf16, where the two orders can land one bf16 ulp
    apart: 4 bf16 ulps per layer are allowed (the fast-path tests allow 0.06 + 2% for bf16 vs float32).
    """
    import math

    import torch

    def tolerance(config, logits) -> float:
        scale = max(1.0, float(logits.abs().max()))
        if config.autocast == "bf16":
            return 4 * torch.finfo(torch.bfloat16).eps * config.num_layers * scale
        return 16 * torch.finfo(torch.float32).eps * math.sqrt(config.d_model) * config.num_layers * scale

    return tolerance
