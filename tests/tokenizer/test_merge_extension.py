"""The C merge loop (tinylm.tokenizer._bpe_merge) gives exactly the merges of the Python bpe_merges."""

import random

import pytest

from array import array

import numpy as np

from tinylm.tokenizer.train import PackedWords, bpe_merges, count_pretokens

try:
    from tinylm.tokenizer import _bpe_merge
except ImportError as exc:  # optional extension: no compiler at install time
    pytest.skip(
        f"C extension tinylm.tokenizer._bpe_merge is not built ({exc}); "
        "build it with `python setup.py build_ext --inplace` or `pip install -e .`",
        allow_module_level=True,
    )

EOT = "<|endoftext|>"


def word_counts_of(counts) -> dict[bytes, int]:
    """count_pretokens' result as train_bpe feeds it to bpe_merges (SpillingCounter or Counter)."""
    if hasattr(counts, "items_bytes"):
        return dict(counts.items_bytes())
    return {w.encode("utf-8"): c for w, c in counts.items()}


def c_merges(word_counts: dict[bytes, int], num_merges: int, callback=None):
    return _bpe_merge.merge(list(word_counts), list(word_counts.values()), num_merges, callback)


def packed_merges(word_counts: dict[bytes, int], num_merges: int, callback=None):
    words = PackedWords(word_counts.items())
    return _bpe_merge.merge_packed(words.blob, words.ends, words.freqs, num_merges, callback)


def prepared_merges(word_counts: dict[bytes, int], num_merges: int):
    """prepare_packed, the buffers dropped, then run: what train_bpe does."""
    words = PackedWords(word_counts.items())
    state = _bpe_merge.prepare_packed(words.blob, words.ends, words.freqs, num_merges)
    words.clear()
    return _bpe_merge.run(state)


def assert_same(word_counts: dict[bytes, int], num_merges: int):
    """Python loop == C loop over lists == C loop over packed buffers == prepared state (what train_bpe calls)."""
    expected = bpe_merges(word_counts, num_merges)
    got = c_merges(word_counts, num_merges)
    assert got == expected
    assert packed_merges(word_counts, num_merges) == expected
    assert prepared_merges(word_counts, num_merges) == expected
    return got


@pytest.fixture(scope="module")
def corpus_counts(fixtures):
    return word_counts_of(count_pretokens(fixtures / "corpus.en", [EOT], num_workers=1))


@pytest.mark.parametrize("num_merges", [500 - 256 - 1, 3000])
def test_fixture_corpus_matches_python(corpus_counts, num_merges):
    got = assert_same(corpus_counts, num_merges)
    assert len(got) == num_merges


def test_fixture_corpus_reproduces_reference_merges(corpus_counts, fixtures):
    from tinylm.tokenizer.files import load_merges

    table = [bytes([i]) for i in range(256)]
    got = []
    for a, b in c_merges(corpus_counts, 500 - 256 - 1):
        got.append((table[a], table[b]))
        table.append(table[a] + table[b])
    assert got == load_merges(fixtures / "train-bpe-reference-merges.txt")


def test_fixture_corpus_runs_until_no_pair_left(corpus_counts):
    # Far more merges than pairs: both stop when nothing is left to merge, at the same place.
    small = dict(list(corpus_counts.items())[:300])
    got = assert_same(small, 100_000)
    assert 0 < len(got) < 100_000


@pytest.mark.parametrize(
    "word_counts, first",
    [
        # (b"B", b"A") beats (b"A", b"B") on a tie.
        ({b"AB": 1, b"BA": 1}, (ord("B"), ord("A"))),
        # (s, t) beats (e, s): first elements compare first.
        ({b"est": 5}, (ord("s"), ord("t"))),
        ({b"es": 3, b"st": 3, b"est": 4}, (ord("s"), ord("t"))),
        # Count beats bytes.
        ({b"za": 1, b"ab": 2}, (ord("a"), ord("b"))),
    ],
)
def test_tie_breaks(word_counts, first):
    assert assert_same(word_counts, 10)[0] == first


def test_prefix_tie_break_longer_token_is_greater():
    # After merging (a, b) -> "ab": (b"ab", b"c") and (b"a", b"d") tie at 3. b"a" is a prefix of
    # b"ab", so b"ab" is greater and wins, although b"d" > b"c" and b"ad" > b"abc".
    counts = {b"ab": 10, b"abc": 3, b"ad": 3}
    got = assert_same(counts, 5)
    assert got[:2] == [(ord("a"), ord("b")), (256, ord("c"))]
    # Same with the shorter token second: (b"x", b"ab") vs (b"x", b"a") -> (x, ab) first.
    counts = {b"ab": 10, b"xab": 3, b"xa": 3}
    got = assert_same(counts, 5)
    assert got[:2] == [(ord("a"), ord("b")), (ord("x"), 256)]


@pytest.mark.parametrize(
    "word_counts",
    [
        {b"aaa": 1},
        {b"aaaa": 1},
        {b"aaaaa": 2},
        {b"aaaaaaa": 1, b"aaa": 1},
        {b"aaaaaaaaaaaaaaaa": 1},  # 16 a's: aa, aaaa, 8a, 16a
        {b"aaab": 3, b"baaa": 3, b"abab": 2, b"aabb": 1},
        {b"abababa": 1, b"bababab": 1},
        {b"a": 5, b"b": 1, b"": 7},  # no pairs at all
    ],
)
def test_runs_of_equal_ids(word_counts):
    assert_same(word_counts, 50)


def test_runs_merge_leftmost_non_overlapping():
    # "aaa" -> [aa, a]; "aaaa" -> [aa, aa]; then (aa, aa) has count 1 and (aa, a) count 1:
    # tie -> (b"aa", b"aa") > (b"aa", b"a").
    got = assert_same({b"aaa": 1, b"aaaa": 1}, 5)
    assert got == [(97, 97), (256, 256), (256, 97)]


def test_large_frequencies_are_int64():
    big = 3 << 31  # > 2**32
    counts = {b"ab": big, b"cd": big - 1, b"abcd": 2**40, b"xy": 2**61}
    got = assert_same(counts, 10)
    assert got[0] == (ord("x"), ord("y"))


def test_empty_and_zero_merges():
    assert c_merges({}, 10) == [] == bpe_merges({}, 10)
    assert c_merges({b"hello": 3}, 0) == []


@pytest.mark.parametrize("seed", range(300))
def test_random_small_corpora(seed):
    rng = random.Random(seed)
    alphabet = b"abc" if seed % 3 else b"ab"
    words: dict[bytes, int] = {}
    for _ in range(rng.randint(1, 40)):
        w = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        hi = (1, 3, 10, 1000)[seed % 4]  # small ranges give many ties
        words[w] = words.get(w, 0) + rng.randint(1, hi)
    assert_same(words, rng.choice([5, 20, 200]))


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_corpora(seed):
    rng = random.Random(1000 + seed)
    words = {bytes(rng.randrange(256) if rng.random() < 0.1 else rng.choice(b" eta") for _ in range(rng.randint(1, 20))): rng.randint(1, 50)
             for _ in range(200)}
    assert_same(words, 300)


def test_progress_callback_reports_merges_done(corpus_counts):
    seen = []
    got = c_merges(corpus_counts, 1234, seen.append)
    assert len(got) == 1234
    assert seen == sorted(seen) and seen[-1] == 1234
    assert all(b - a <= 100 for a, b in zip([0] + seen, seen))


def test_callback_exception_propagates(corpus_counts):
    def boom(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        c_merges(corpus_counts, 1000, boom)


def test_bad_arguments():
    with pytest.raises(ValueError, match="same length"):
        _bpe_merge.merge([b"ab"], [1, 2], 5)
    with pytest.raises(ValueError, match="distinct"):
        _bpe_merge.merge([b"ab", b"ab"], [1, 2], 5)
    with pytest.raises(ValueError, match="positive"):
        _bpe_merge.merge([b"ab"], [0], 5)
    with pytest.raises(TypeError, match="bytes"):
        _bpe_merge.merge(["ab"], [1], 5)
    with pytest.raises(OverflowError):
        _bpe_merge.merge([b"ab"], [2**64], 5)
    with pytest.raises(ValueError, match="non-negative"):
        _bpe_merge.merge([b"ab"], [1], -1)
    with pytest.raises(TypeError, match="callable"):
        _bpe_merge.merge([b"ab"], [1], 1, 5)


def test_packed_words_round_trip_and_accept_numpy_buffers(corpus_counts):
    words = PackedWords(corpus_counts.items())
    assert len(words) == len(corpus_counts) and dict(words.items()) == corpus_counts
    ends, freqs = np.frombuffer(words.ends, dtype=np.int64), np.frombuffer(words.freqs, dtype=np.int64)
    assert _bpe_merge.merge_packed(bytes(words.blob), ends, freqs, 300) == bpe_merges(corpus_counts, 300)


def test_packed_duplicates_count_as_one_word_with_the_summed_frequency():
    counts = {b"hello": 3, b" world": 2, b"low": 5}
    split = PackedWords([(b"hello", 1), (b" world", 2), (b"low", 4), (b"hello", 2), (b"low", 1)])
    assert _bpe_merge.merge_packed(split.blob, split.ends, split.freqs, 20) == bpe_merges(counts, 20)


def test_packed_bad_arguments():
    q = lambda *v: array("q", v)  # noqa: E731
    with pytest.raises(ValueError, match="same length"):
        _bpe_merge.merge_packed(b"ab", q(2), q(1, 1), 5)
    with pytest.raises(ValueError, match="ends\\[1\\]"):
        _bpe_merge.merge_packed(b"abc", q(2, 1), q(1, 1), 5)  # ends go backwards
    with pytest.raises(ValueError, match="len\\(blob\\)"):
        _bpe_merge.merge_packed(b"ab", q(3), q(1), 5)  # past the end of the blob
    with pytest.raises(ValueError, match="positive"):
        _bpe_merge.merge_packed(b"ab", q(2), q(0), 5)
    with pytest.raises(TypeError, match="int64"):
        _bpe_merge.merge_packed(b"ab", array("i", [2]), q(1), 5)
    with pytest.raises(TypeError, match="int64"):  # 8-byte items, but not int64: refused, not reinterpreted
        _bpe_merge.merge_packed(b"ab", q(2), np.array([1.0]), 5)
    with pytest.raises(TypeError, match="int64"):
        _bpe_merge.merge_packed(b"ab", np.array([2], dtype=np.uint64), q(1), 5)
    with pytest.raises(TypeError):
        _bpe_merge.merge_packed(b"ab", [2], [1], 5)  # lists are not buffers
    with pytest.raises(ValueError, match="non-negative"):
        _bpe_merge.merge_packed(b"ab", q(2), q(1), -1)
    assert _bpe_merge.merge_packed(b"", q(), q(), 5) == []


def test_prepared_state_runs_once_and_checks_its_type(corpus_counts):
    words = PackedWords(corpus_counts.items())
    state = _bpe_merge.prepare_packed(words.blob, words.ends, words.freqs, 50)
    seen = []
    assert _bpe_merge.run(state, seen.append) == bpe_merges(corpus_counts, 50) and seen[-1] == 50
    with pytest.raises(ValueError, match="already been run"):
        _bpe_merge.run(state)
    with pytest.raises(ValueError):
        _bpe_merge.run(object())  # not a prepared state
    with pytest.raises(TypeError, match="int64"):
        _bpe_merge.prepare_packed(b"ab", array("i", [2]), array("q", [1]), 5)
    unused = _bpe_merge.prepare_packed(words.blob, words.ends, words.freqs, 50)
    del unused  # freed by the capsule's destructor without running
