"""The toy SGD study has the shape the course describes; a sweep's verdict on each run."""

import math

from hypothesis import given
from hypothesis import strategies as st

from tinylm.experiments import LEARNED_MARGIN, toy_sgd_study, verdict


def test_toy_sgd_shape():
    losses = toy_sgd_study()
    slow, fast, wild = losses[10.0], losses[100.0], losses[1000.0]
    assert all(len(v) == 10 for v in losses.values())
    assert slow[0] == fast[0] == wild[0] > 0  # same initial weight
    assert all(b < a for a, b in zip(slow, slow[1:])) and slow[-1] > 0.05 * slow[0]  # decays, slowly
    assert fast[-1] < 1e-6 * fast[0]  # decays fast
    assert wild[-1] > 1e6 * wild[0] and all(b > a for a, b in zip(wild, wild[1:]))  # diverges



# --- the sweep's verdict (issue 11: lr=1000 ended at exactly ln 257 and was reported "ok" on one CPU) ---------
LN_257 = math.log(257)


def test_a_run_that_collapsed_to_a_uniform_guess_diverged():
    # the seed machine's lr=1000 run: train and validation loss 5.5491, a hair either side of ln 257 by CPU
    for final in (5.5491, LN_257, LN_257 - 1e-6, LN_257 + 1e-6, math.nextafter(LN_257, 0)):
        assert verdict([5.6809, 1_055_057.4, final], final, LN_257).startswith("diverged")
    assert verdict([5.68, 5.31, 5.12], 5.06, LN_257) == "ok"  # lr=3e-3 on the same data learned


@given(start=st.floats(0.5, 20), drop=st.floats(0, 0.5), noise=st.floats(-1e-3, 1e-3))
def test_the_verdict_depends_on_the_margin_not_the_last_digits(start, drop, noise):
    """Near ln V (within rounding either way) a run is always diverged; clearly below it and falling, always ok."""
    uniform = math.log(257)
    at_uniform = uniform * (1 + noise * 1e-3)
    assert verdict([start, at_uniform], at_uniform, uniform).startswith("diverged")
    below = uniform * (1 - LEARNED_MARGIN) - drop - 1e-9
    expected = "ok" if below < start else "diverged"
    assert verdict([start, below], below, uniform).startswith(expected)
