"""BpeTrainer: settings validated once, before any input is read; train() returns the Tokenizer and its
statistics, identical to the course-compatible train_bpe; the one parallel map over file pieces."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm import Tokenizer, train_bpe
from tinylm.errors import ConfigError, InputFileError
from tinylm.tokenizer._native import COUNT_BACKENDS, MERGE_BACKENDS, c_backend_available
from tinylm.tokenizer.chunking import map_pieces
from tinylm.tokenizer.train import BpeTrainer, TrainedTokenizer, TrainStats

FIXTURES = Path(__file__).parent.parent / "fixtures"
EOT = "<|endoftext|>"


@pytest.mark.parametrize("backend", ["python", "auto"])
def test_train_returns_the_tokenizer_train_bpe_describes(backend):
    stats = TrainStats()
    vocab, merges = train_bpe(FIXTURES / "corpus.en", 400, [EOT], num_workers=1, merge_backend=backend, count_backend=backend, stats=stats)
    trained = BpeTrainer(400, (EOT,), workers=1, merge_backend=backend, count_backend=backend).train(FIXTURES / "corpus.en")
    assert isinstance(trained, TrainedTokenizer) and isinstance(trained.tokenizer, Tokenizer)
    assert trained.tokenizer.vocab == vocab and trained.tokenizer.merges == merges
    assert trained.tokenizer.special_tokens == [EOT] and trained.tokenizer.vocab_size == 400
    text = (FIXTURES / "tinystories_sample.txt").read_text()[:5000] + EOT
    assert trained.tokenizer.encode(text, allowed_special="all") == Tokenizer(vocab, merges, [EOT]).encode(text, allowed_special="all")
    got = trained.stats
    assert (got.input_bytes, got.distinct_pretokens, got.num_merges, got.spill_runs) == (
        stats.input_bytes, stats.distinct_pretokens, stats.num_merges, stats.spill_runs,
    ) == ((FIXTURES / "corpus.en").stat().st_size, stats.distinct_pretokens, 400 - 257, 0)
    assert got.merge_backend == stats.merge_backend and got.count_backend == stats.count_backend
    assert got.count_backend == ("c" if backend == "auto" and c_backend_available() else "python")


def test_settings_hold_a_tuple_and_the_number_of_merges():
    trainer = BpeTrainer(1000, [EOT, "<|pad|>"])
    assert trainer.special_tokens == (EOT, "<|pad|>") and trainer.num_merges == 1000 - 256 - 2
    with pytest.raises(AttributeError):
        trainer.vocab_size = 5  # frozen: validated settings stay valid


def test_bad_settings_are_refused_before_the_input_is_read(tmp_path):
    """Regression: a bad merge backend used to surface only after the whole corpus was counted
    (and after the input was checked); now building the settings refuses it."""
    missing = tmp_path / "no-such-corpus.txt"
    with pytest.raises(ConfigError, match="merge backend must be one of auto, c, python, got 'fortran'"):
        train_bpe(missing, 300, [EOT], merge_backend="fortran")
    with pytest.raises(ConfigError, match="count backend must be one of auto, python"):
        BpeTrainer(300, (EOT,), count_backend="c")
    with pytest.raises(ConfigError, match="workers must be at least 1"):
        BpeTrainer(300, workers=-2)


# Settings drawn around every rule's edge: some valid, some not.
setting_values = st.fixed_dictionaries({
    "vocab_size": st.integers(250, 262),
    "special_tokens": st.lists(st.sampled_from([EOT, "<|pad|>", "é", "!", ""]), max_size=3),
    "workers": st.none() | st.integers(-1, 3),
    "chunk_bytes": st.integers(-1, 3),
    "scan_bytes": st.integers(-1, 3),
    "max_memory": st.none() | st.sampled_from([100, 4095, 4096, 1 << 20]),
    "merge_backend": st.sampled_from(MERGE_BACKENDS + ("fortran", "C")),
    "count_backend": st.sampled_from(COUNT_BACKENDS + ("c", "")),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=setting_values)
def test_settings_are_checked_first_for_any_combination(tmp_path_factory, values):
    """For any settings, train_bpe on a missing file fails with ConfigError exactly when the settings
    are bad (BpeTrainer refuses them), and with InputFileError only when they are good."""
    missing = tmp_path_factory.getbasetemp() / "missing.txt"
    try:
        BpeTrainer(**values)
        settings_ok = True
    except ConfigError:
        settings_ok = False
    kwargs = dict(values, num_workers=values["workers"])
    del kwargs["workers"]
    with pytest.raises(InputFileError if settings_ok else ConfigError):
        train_bpe(missing, **kwargs)


def _square(x: int) -> int:
    return x * x


def _remember(value: int) -> None:
    global _REMEMBERED
    _REMEMBERED = value


def _add_remembered(x: int) -> int:
    return x + _REMEMBERED


@pytest.mark.parametrize("workers", [1, 2])
def test_map_pieces_in_order_or_as_finished_equals_a_plain_map(workers):
    items = list(range(40))
    with map_pieces(_square, iter(items), workers) as results:
        assert list(results) == [x * x for x in items]
    with map_pieces(_square, iter(items), workers, ordered=False) as results:
        assert sorted(results) == [x * x for x in items]
    with map_pieces(_add_remembered, items, workers, initializer=_remember, initargs=(1000,)) as results:
        assert list(results) == [x + 1000 for x in items]


def test_map_pieces_stops_its_workers_when_left_early():
    with map_pieces(_square, range(10_000), 2) as results:
        assert next(results) == 0
    assert multiprocessing.active_children() == []


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 40), workers=st.integers(2, 5), ordered=st.booleans())
def test_thread_map_keeps_order_and_bounds_pieces_in_flight(n, workers, ordered):
    """map_pieces(threads=True): every result once, in order when asked, never more than 2 x workers
    pieces started and not yet handed back (memory bounded by the piece size)."""
    import threading
    import time

    from tinylm.tokenizer.chunking import map_pieces

    lock, started, handed, peak = threading.Lock(), [0], [0], [0]

    def work(i):
        with lock:
            started[0] += 1
            peak[0] = max(peak[0], started[0] - handed[0])
        time.sleep(0.001 * (i % 3))
        return i * i

    out = []
    with map_pieces(work, range(n), workers, ordered=ordered, threads=True) as results:
        for r in results:
            out.append(r)
            with lock:
                handed[0] += 1
    assert (out if ordered else sorted(out)) == [i * i for i in range(n)]
    assert peak[0] <= 2 * workers


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(1, 50), max_size=30), workers=st.integers(1, 4), task_bytes=st.integers(1, 200))
def test_counting_tasks_cover_the_pieces_in_order_within_their_size(sizes, workers, task_bytes):
    """group_ranges: consecutive pieces, each exactly once and in order; a task of several pieces never
    passes the limit (task_bytes, and half a worker's share so every worker gets at least two)."""
    from tinylm.tokenizer.train import group_ranges

    ranges, pos = [], 0
    for n in sizes:
        ranges.append((pos, pos + n))
        pos += n
    groups = group_ranges(ranges, workers, pos, task_bytes)
    assert [r for g in groups for r in g] == ranges
    limit = max(1, min(task_bytes, pos // (2 * workers)))
    for g in groups:
        assert len(g) == 1 or g[-1][1] - g[0][0] <= limit
