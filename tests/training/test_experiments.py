"""The toy SGD study has the shape the course describes."""

from tinylm.experiments import toy_sgd_study


def test_toy_sgd_shape():
    losses = toy_sgd_study()
    slow, fast, wild = losses[10.0], losses[100.0], losses[1000.0]
    assert all(len(v) == 10 for v in losses.values())
    assert slow[0] == fast[0] == wild[0] > 0  # same initial weight
    assert all(b < a for a, b in zip(slow, slow[1:])) and slow[-1] > 0.05 * slow[0]  # decays, slowly
    assert fast[-1] < 1e-6 * fast[0]  # decays fast
    assert wild[-1] > 1e6 * wild[0] and all(b > a for a, b in zip(wild, wild[1:]))  # diverges

