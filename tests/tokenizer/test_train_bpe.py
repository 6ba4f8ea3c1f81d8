"""BPE training: exact against the reference fixture, tie-breaking, specials, parallel == serial."""

import random
from collections import Counter

import pytest

from tinylm import train_bpe
from tinylm.errors import ConfigError, InputFileError, InvalidUTF8Error
from tinylm.tokenizer.chunking import chunk_ranges, read_text_range
from tinylm.tokenizer.files import load_merges, load_vocab
from tinylm.tokenizer.pretokenize import pretokenize, special_token_regex, split_on_special
from tinylm.tokenizer.train import bpe_merges, count_pretokens

EOT = "<|endoftext|>"


@pytest.mark.parametrize("backend", ["python", "auto"])  # pure Python end to end, or both C helpers when built
def test_reference_merges_and_vocab(fixtures, backend):
    vocab, merges = train_bpe(fixtures / "corpus.en", 500, [EOT], merge_backend=backend, count_backend=backend)
    assert merges == load_merges(fixtures / "train-bpe-reference-merges.txt")
    ref_vocab = load_vocab(fixtures / "train-bpe-reference-vocab.json")
    assert set(vocab.keys()) == set(ref_vocab.keys())
    assert set(vocab.values()) == set(ref_vocab.values())
    assert vocab[0] == EOT.encode()
    assert len(vocab) == 500


def test_parallel_small_chunks_equal_serial(fixtures, tmp_path):
    # Many chunks and two workers must give exactly the single-process result.
    text = (fixtures / "tinystories_sample.txt").read_text() * 20
    path = tmp_path / "stories.txt"
    path.write_text(text)
    serial = train_bpe(path, 400, [EOT], num_workers=1)
    parallel = train_bpe(path, 400, [EOT], num_workers=2, chunk_bytes=2000)
    assert serial == parallel


def test_chunk_ranges_cover_file_and_preserve_counts(fixtures, tmp_path):
    # No special token at all: cuts fall at safe newlines/spaces and counts stay identical.
    text = (fixtures / "corpus.en").read_text()
    path = tmp_path / "c.txt"
    path.write_text(text)
    ranges = list(chunk_ranges(path, [], 1000))
    assert len(ranges) > 50
    assert ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    pieces = Counter()
    for s, e in ranges:
        pieces.update(pretokenize(read_text_range(path, s, e)))
    assert pieces == Counter(pretokenize(text))


def test_chunk_cut_never_splits_overlapping_special(tmp_path):
    double = EOT + EOT
    text = ("word " * 50 + double) * 40
    path = tmp_path / "d.txt"
    path.write_text(text)
    special_re = special_token_regex([EOT, double])
    for s, e in chunk_ranges(path, [EOT, double], 100):
        piece = read_text_range(path, s, e)
        assert not piece.startswith(EOT[1:]) and not piece.endswith(EOT[:-1])
        assert special_re.findall(piece) in ([], [double])


def test_special_token_never_merged_across(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text(("ab" + EOT) * 50 + "ab")
    vocab, merges = train_bpe(path, 256 + 1 + 10, [EOT])
    assert merges == [(b"a", b"b")]  # nothing else: "b<|" never counted
    assert all(EOT.encode() not in a + b for a, b in merges)


def test_tie_break_prefers_lexicographically_greatest_pair():
    # "BA" and "AB" tie: (b"B", b"A") beats (b"A", b"B").
    assert bpe_merges({b"AB": 1, b"BA": 1}, 1) == [(ord("B"), ord("A"))]
    # (b"es", b"t") beats (b"e", b"st") when both counts tie.
    merges = bpe_merges({b"est": 5}, 3)
    names = {ord("e"): b"e", ord("s"): b"s", ord("t"): b"t"}
    first = merges[0]
    assert (names[first[0]], names[first[1]]) == (b"s", b"t")  # (s,t) > (e,s)
    counts = {b"es": 3, b"st": 3, b"est": 4}
    out = bpe_merges(counts, 1)
    assert out == [(ord("s"), ord("t"))]


def _slow_bpe(words: dict[bytes, int], num_merges: int) -> list[tuple[bytes, bytes]]:
    """Obviously correct: recount everything each step."""
    seqs = {w: [bytes([b]) for b in w] for w in words}
    merges = []
    for _ in range(num_merges):
        pairs = Counter()
        for w, seq in seqs.items():
            for p in zip(seq, seq[1:]):
                pairs[p] += words[w]
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        for w, seq in seqs.items():
            out, i = [], 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            seqs[w] = out
    return merges


def _ids_to_bytes(merges):
    table = [bytes([i]) for i in range(256)]
    out = []
    for a, b in merges:
        out.append((table[a], table[b]))
        table.append(table[a] + table[b])
    return out


@pytest.mark.parametrize("seed", range(40))
def test_merge_loop_matches_slow_reference(seed):
    rng = random.Random(seed)
    words = {}
    for _ in range(rng.randint(1, 30)):
        w = bytes(rng.choice(b"abc") for _ in range(rng.randint(1, 9)))
        words[w] = words.get(w, 0) + rng.randint(1, 5)
    assert _ids_to_bytes(bpe_merges(words, 30)) == _slow_bpe(words, 30)


def test_vocab_size_too_small(fixtures):
    with pytest.raises(ConfigError, match="at least 256 \\+ 1"):
        train_bpe(fixtures / "corpus.en", 256, [EOT])


@pytest.mark.parametrize("specials, match", [([EOT, EOT], "twice"), ([""], "empty")])
def test_bad_special_tokens(fixtures, specials, match):
    with pytest.raises(ConfigError, match=match):
        train_bpe(fixtures / "corpus.en", 300, specials)


def test_missing_empty_directory_inputs(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        train_bpe(tmp_path / "nope.txt", 300, [EOT])
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(InputFileError, match="empty"):
        train_bpe(tmp_path / "empty.txt", 300, [EOT])
    with pytest.raises(InputFileError, match="empty: .*empty.txt"):  # a folder is a corpus of shards: its empty file is named
        train_bpe(tmp_path, 300, [EOT])
    (tmp_path / "none").mkdir()
    with pytest.raises(InputFileError, match="directory holds no corpus files"):
        train_bpe(tmp_path / "none", 300, [EOT])


def test_invalid_utf8_reports_byte_offset(tmp_path):
    data = ("hello world " * 1000).encode() + b"\xff\xfe" + b" more text" * 100
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(InvalidUTF8Error) as err:
        train_bpe(path, 300, [EOT], num_workers=2, chunk_bytes=500)
    assert err.value.offset == 12000
    assert "12000" in str(err.value)


def test_count_pretokens_splits_on_specials(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text(f"hello{EOT} world{EOT}hello")
    counts = count_pretokens(path, [EOT], num_workers=1)
    assert dict(counts.items_bytes()) == {b"hello": 2, b" world": 1}
    assert split_on_special("a<|endoftext|>b", special_token_regex([EOT])) == ["a", "b"]


def test_tie_key_orders_pairs_greatest_first():
    from tinylm.tokenizer.train import _tie_key

    rng = random.Random(0)
    toks = [bytes(rng.choice(b"ab\x00\xff") for _ in range(rng.randint(1, 4))) for _ in range(60)]
    toks += [b"e", b"es", b"st", b"t", b"A", b"B"]
    pairs = list({(a, b) for a in toks for b in toks})
    by_key = sorted(pairs, key=lambda p: _tie_key(p[0]) + _tie_key(p[1]))
    assert by_key == sorted(pairs, reverse=True)
    assert _tie_key(b"es") + _tie_key(b"t") < _tie_key(b"e") + _tie_key(b"st")


def test_memory_budget_spills_and_gives_identical_merges(fixtures, tmp_path):
    from tinylm.tokenizer.train import TrainStats

    text = (fixtures / "corpus.en").read_text() + "<|endoftext|>" + (fixtures / "german.txt").read_text()
    path = tmp_path / "c.txt"
    path.write_text(text * 3)
    in_memory = train_bpe(path, 600, [EOT], num_workers=2, chunk_bytes=20_000)
    stats = TrainStats()
    spilled = train_bpe(path, 600, [EOT], num_workers=2, chunk_bytes=20_000, max_memory=100_000, stats=stats, spill_dir=tmp_path)
    assert stats.spill_runs >= 3
    assert spilled == in_memory
    from tinylm.tokenizer.spill import SpillingCounter

    counter = SpillingCounter(10_000, tmp_path)
    for s, e in chunk_ranges(path, [EOT], 5_000):
        counter.update({k.encode(): v for k, v in Counter(pretokenize(read_text_range(path, s, e).replace(EOT, " "))).items()})
    assert len(counter.runs) >= 3
    merged = dict(counter.items_bytes())
    expected = Counter(pretokenize(path.read_text().replace(EOT, " ")))
    assert merged == {k.encode(): v for k, v in expected.items()}
    assert not list(tmp_path.glob("tinylm-spill-*"))  # spill files cleaned up


def test_memory_budget_too_small(fixtures):
    with pytest.raises(ConfigError, match="max_memory"):
        train_bpe(fixtures / "corpus.en", 300, [EOT], max_memory=100)


def test_unknown_merge_backend(fixtures):
    with pytest.raises(ConfigError, match="merge backend"):
        train_bpe(fixtures / "corpus.en", 300, [EOT], merge_backend="fortran")
    with pytest.raises(ConfigError, match="count backend"):
        train_bpe(fixtures / "corpus.en", 300, [EOT], count_backend="fortran")
