"""Text cut into pieces gives exactly what the whole text gives (issue 11, part 2).

Every place that cuts text: file ranges (chunking.chunk_ranges, used by encode_file and BPE
counting) and streaming (Tokenizer.encode_iterable). The references are written here from the
definition, independently of the code under test: special tokens are taken leftmost first and,
of those starting at one place, the longest (`naive_special_split`), and the text between them
is encoded with `encode_ordinary` / pre-tokenized with `pretokenize`. Piece and scan sizes are
tiny (1 to 12) so that cuts fall everywhere, special tokens are random sets over a small alphabet
(so they overlap, nest and are prefixes of one another) with some longer than any window, on both
encoder backends and both counting backends.
"""

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tinylm import Tokenizer
from tinylm.errors import ConfigError, SpecialTokenNotAllowedError
from tinylm.tokenizer.chunking import chunk_ranges, read_text_range
from tinylm.tokenizer.token_arrays import encode_file
from tinylm.tokenizer._native import c_backend_available
from tinylm.tokenizer.pretokenize import SpecialTokenMatcher, find_safe_cut, pretokenize, special_matcher
from tinylm.tokenizer.train import count_pretokens

EOT = "<|endoftext|>"
DOUBLE = EOT + EOT
_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
PROPS = settings(max_examples=30, deadline=None, suppress_health_check=_CHECKS)  # default suite: ~1 s per test
SLOW = settings(max_examples=2_000, deadline=None, suppress_health_check=_CHECKS)  # -m slow

ENCODER_BACKENDS = [pytest.param("python"), pytest.param("c", marks=pytest.mark.skipif(not c_backend_available(), reason="C encoder not built"))]
COUNT_BACKENDS = [pytest.param("python"), pytest.param("auto", marks=pytest.mark.skipif(not c_backend_available(), reason="C counter not built"))]

# Merges that make a wrong pre-token boundary visible in the ids: " ab" is one id, " " + "ab" two.
_MERGES = [(b" ", b"a"), (b"a", b"b"), (b" a", b"b"), (b"\n", b"\n"), (b" ", b" "), (b"\xc3", b"\xa9"), (b" ", b"\xc3\xa9"),
           (b"<", b"|"), (b"|", b">"), (b"b", b"a"), (b"'", b"s"), (b"\t", b" "), (b"ab", b"\xc3\xa9")]


def small_vocab() -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in _MERGES:
        vocab[len(vocab)] = a + b
    return vocab, list(_MERGES)


def make_tokenizer(specials, backend) -> Tokenizer:
    vocab, merges = small_vocab()
    return Tokenizer(vocab, merges, specials, backend=backend)


def naive_special_split(text: str, specials) -> list[str | tuple[str]]:
    """Text between special tokens (str) and the tokens (1-tuples): leftmost first, longest at a start."""
    out, pos, start = [], 0, 0
    by_length = sorted(set(specials), key=len, reverse=True)
    while pos < len(text):
        tok = next((t for t in by_length if text.startswith(t, pos)), None)
        if tok is None:
            pos += 1
            continue
        if pos > start:
            out.append(text[start:pos])
        out.append((tok,))
        pos = start = pos + len(tok)
    if start < len(text):
        out.append(text[start:])
    return out


def reference_encode(tok: Tokenizer, text: str, allowed) -> list[int]:
    ids = []
    for part in naive_special_split(text, allowed):
        ids.extend([tok.special_to_id[part[0]]] if isinstance(part, tuple) else tok.encode_ordinary(part))
    return ids


def reference_counts(text: str, specials) -> dict[bytes, int]:
    counts = Counter()
    for part in naive_special_split(text, specials):
        if isinstance(part, str):
            counts.update(p.encode("utf-8") for p in pretokenize(part))
    return dict(counts)


# --- strategies ------------------------------------------------------------------------------
SPECIAL_ALPHABET = "<|>ab é\n"
TEXT_ALPHABET = "ab <|>é日\n\t'.s\u3000\x85"


@st.composite
def special_sets(draw, min_size=0):
    base = draw(st.lists(st.text(SPECIAL_ALPHABET, min_size=1, max_size=5), min_size=min_size, max_size=4, unique=True))
    tokens = list(base)
    for _ in range(draw(st.integers(0, 3)) if base else 0):
        a, b = draw(st.sampled_from(base)), draw(st.sampled_from(base))
        kind = draw(st.sampled_from(["nested", "prefix", "long"]))
        if kind == "nested":  # a token made of others, like <|endoftext|><|endoftext|>
            tokens.append(a + b)
        elif kind == "prefix" and len(a) > 1:
            tokens.append(a[: draw(st.integers(1, len(a) - 1))])
        else:  # longer than any piece or window the tests use
            tokens.append(a * draw(st.integers(4, 12)))
    return list(dict.fromkeys(tokens))


def texts(specials):
    parts = [st.text(TEXT_ALPHABET, max_size=10)]
    if specials:
        some = st.sampled_from(specials)
        parts += [some, some, some.flatmap(lambda t: st.integers(0, len(t)).map(lambda i: t[:i])),
                  some.flatmap(lambda t: st.integers(0, len(t)).map(lambda i: t[i:]))]
    return st.lists(st.one_of(*parts), max_size=14).map("".join)


# --- the regression input of issue 11 ------------------------------------------------------------
@pytest.mark.parametrize("backend", ENCODER_BACKENDS)
@pytest.mark.parametrize("before", range(1, len(DOUBLE)))
def test_double_token_across_the_piece_mark_stays_whole(tmp_path, backend, before):
    # Issue 11's input at a 64-byte piece instead of 4 MiB: the double token starts `before` bytes
    # before the mark (5 in the report). The cut search read from the mark on, saw only a single
    # <|endoftext|> and cut before it: the double became two singles (one id too many).
    tok = make_tokenizer([EOT, DOUBLE], backend)
    text = "x" * (64 - before) + DOUBLE + " ab" * 9 + EOT + "z"
    path = tmp_path / "in.txt"
    path.write_text(text)
    encode_file(tok, path, tmp_path / "out.npy", num_workers=1, chunk_bytes=64)
    ids = np.load(tmp_path / "out.npy").tolist()
    assert ids == tok.encode(text) == reference_encode(tok, text, [EOT, DOUBLE])
    assert ids.count(tok.special_to_id[DOUBLE]) == 1


def test_double_token_5_bytes_before_the_4_mib_mark(tmp_path):
    # The report's input at the default 4 MiB piece, one worker (`tinylm encode FILE -t TOK -o out.npy -j 1`
    # calls encode_file with these settings; in-process here to keep the default suite fast).
    tok = Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT, DOUBLE])
    text = "x" * ((4 << 20) - 5) + DOUBLE + "\nend"
    path = tmp_path / "big.txt"
    path.write_text(text)
    encode_file(tok, path, tmp_path / "out.npy", num_workers=1)
    ids = np.load(tmp_path / "out.npy")
    expected = tok.encode(text)
    assert len(ids) == len(expected) and ids.tolist() == expected


@pytest.mark.parametrize("backend", COUNT_BACKENDS)
@pytest.mark.parametrize("before", range(1, 4))
def test_bpe_counts_with_a_longer_token_across_the_piece_mark(tmp_path, backend, before):
    # The same fault in BPE counting: "zzz<|endoftext|>" starts `before` bytes before the mark; a
    # cut before the <|endoftext|> inside it left "z..." to be counted as a pre-token.
    longer = "zzz" + EOT
    text = "y" * (64 - before) + longer + " ab" * 9 + EOT + "z"
    path = tmp_path / "in.txt"
    path.write_text(text)
    counts = count_pretokens(path, [EOT, longer], num_workers=1, chunk_bytes=64, backend=backend)
    assert dict(counts.items_bytes()) == reference_counts(text, [EOT, longer])


# --- file ranges: encode_file and BPE counting --------------------------------------------------
def _tiles(ranges, size) -> bool:
    return ranges[0][0] == 0 and ranges[-1][1] == size and all(a[1] == b[0] and a[0] < a[1] for a, b in zip(ranges, ranges[1:]))


file_cases = dict(data=st.data(), chunk_bytes=st.integers(1, 12), scan_bytes=st.integers(1, 12))


@settings(PROPS, max_examples=20)
@given(**file_cases)
def test_encode_file_equals_encoding_the_whole_text(tmp_path_factory, data, chunk_bytes, scan_bytes):
    _check_encode_file(tmp_path_factory, data, chunk_bytes, scan_bytes)


@pytest.mark.slow
@SLOW
@given(**file_cases)
def test_encode_file_equals_encoding_the_whole_text_2k(tmp_path_factory, data, chunk_bytes, scan_bytes):
    _check_encode_file(tmp_path_factory, data, chunk_bytes, scan_bytes)


def _check_encode_file(tmp_path_factory, data, chunk_bytes, scan_bytes):
    specials = data.draw(special_sets())
    text = data.draw(texts(specials))
    assume(text)
    folder = tmp_path_factory.mktemp("enc")
    path = folder / "in.txt"
    path.write_bytes(text.encode("utf-8"))
    assert _tiles(list(chunk_ranges(path, specials, chunk_bytes, scan_bytes=scan_bytes)), path.stat().st_size)
    for backend in ("python", "c") if c_backend_available() else ("python",):
        tok = make_tokenizer(specials, backend)
        expected = reference_encode(tok, text, specials)
        assert tok.encode(text) == expected
        encode_file(tok, path, folder / f"{backend}.npy", num_workers=1, chunk_bytes=chunk_bytes, scan_bytes=scan_bytes)
        assert np.load(folder / f"{backend}.npy").tolist() == expected


@pytest.mark.parametrize("backend", COUNT_BACKENDS)
@PROPS
@given(**file_cases, spill=st.booleans())
def test_bpe_counts_equal_counting_the_whole_text(tmp_path_factory, backend, data, chunk_bytes, scan_bytes, spill):
    _check_counts(tmp_path_factory, backend, data, chunk_bytes, scan_bytes, spill)


@pytest.mark.slow
@pytest.mark.parametrize("backend", COUNT_BACKENDS)
@SLOW
@given(**file_cases, spill=st.booleans())
def test_bpe_counts_equal_counting_the_whole_text_2k(tmp_path_factory, backend, data, chunk_bytes, scan_bytes, spill):
    _check_counts(tmp_path_factory, backend, data, chunk_bytes, scan_bytes, spill)


def _check_counts(tmp_path_factory, backend, data, chunk_bytes, scan_bytes, spill):
    specials = data.draw(special_sets())
    text = data.draw(texts(specials))
    assume(text)
    path = tmp_path_factory.mktemp("count") / "in.txt"
    path.write_bytes(text.encode("utf-8"))
    counts = count_pretokens(path, specials, num_workers=1, chunk_bytes=chunk_bytes, scan_bytes=scan_bytes,
                             max_memory=4096 if spill else None, backend=backend)
    assert dict(counts.items_bytes()) == reference_counts(text, specials)


def test_chunk_ranges_cut_before_a_special_token_only_with_context(tmp_path):
    # The window read for a cut starts before the probe, so a token that began before it is seen.
    path = tmp_path / "d.txt"
    path.write_text("y" * 59 + DOUBLE + "y" * 20 + EOT)  # the double spans 59..85, the last single starts at 105
    for scan in (1, 3, 1 << 20):
        ranges = list(chunk_ranges(path, [EOT, DOUBLE], 64, scan_bytes=scan))
        assert ranges == [(0, 105), (105, 118)]  # not 72, the single inside the double


def test_piece_and_scan_sizes_must_be_positive(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a b")
    with pytest.raises(ConfigError):
        list(chunk_ranges(path, [], 0))
    with pytest.raises(ConfigError):
        list(chunk_ranges(path, [], 4, scan_bytes=0))
    tok = make_tokenizer([], "python")
    with pytest.raises(ConfigError):
        list(tok.encode_iterable(["a"], piece_chars=0))
    with pytest.raises(ConfigError, match="surrogate"):
        make_tokenizer(["<|\ud800|>"], "python")
    with pytest.raises(TypeError):
        list(tok.encode_iterable([b"a"]))


# --- streaming ------------------------------------------------------------------------------
def _outcome(fn):
    try:
        return fn()
    except SpecialTokenNotAllowedError:
        return SpecialTokenNotAllowedError


stream_cases = dict(data=st.data(), piece_chars=st.integers(1, 12), cuts=st.lists(st.integers(0, 200), max_size=8))


@pytest.mark.parametrize("backend", ENCODER_BACKENDS)
@PROPS
@given(**stream_cases)
def test_encode_iterable_equals_encode(backend, data, piece_chars, cuts):
    _check_stream(backend, data, piece_chars, cuts)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ENCODER_BACKENDS)
@SLOW
@given(**stream_cases)
def test_encode_iterable_equals_encode_2k(backend, data, piece_chars, cuts):
    _check_stream(backend, data, piece_chars, cuts)


def _check_stream(backend, data, piece_chars, cuts):
    specials = data.draw(special_sets())
    text = data.draw(texts(specials))
    tok = make_tokenizer(specials, backend)
    cuts = sorted({c % (len(text) + 1) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]
    allowed = data.draw(st.sampled_from(["all", "none", "some"]))
    if allowed == "all":
        kwargs = {}
    elif allowed == "none":
        kwargs = {"allowed_special": set(), "disallowed_special": data.draw(st.sampled_from(["all", ()]))}
    else:
        kwargs = {"allowed_special": set(data.draw(st.lists(st.sampled_from(specials), unique=True))) if specials else set(),
                  "disallowed_special": "all"}
    whole = _outcome(lambda: tok.encode(text, **kwargs))
    if whole is not SpecialTokenNotAllowedError:
        assert whole == reference_encode(tok, text, kwargs.get("allowed_special", specials))
    assert _outcome(lambda: list(tok.encode_iterable(chunks, piece_chars=piece_chars, **kwargs))) == whole


@pytest.mark.parametrize("backend", ENCODER_BACKENDS)
def test_encode_iterable_regression_double_token_at_every_offset(backend):
    tok = make_tokenizer([EOT, DOUBLE], backend)
    for before in range(len(DOUBLE) + 1):
        text = " ab\n" * 3 + "x" * before + DOUBLE + " ab" + EOT + "\nab"
        for piece in (1, 2, 5, 13):
            assert list(tok.encode_iterable([text], piece_chars=piece)) == tok.encode(text)


# --- the matcher and the cut rule themselves ---------------------------------------------------
@PROPS
@given(specials=special_sets(min_size=1), data=st.data())
def test_matcher_is_leftmost_longest_in_text_and_bytes(specials, data):
    _check_matcher(specials, data)


@pytest.mark.slow
@SLOW
@given(specials=special_sets(min_size=1), data=st.data())
def test_matcher_is_leftmost_longest_in_text_and_bytes_2k(specials, data):
    _check_matcher(specials, data)


def _check_matcher(specials, data):
    text = data.draw(texts(specials))
    m = SpecialTokenMatcher(specials)
    expected = [p[0] for p in naive_special_split(text, specials) if isinstance(p, tuple)]
    assert [x.group() for x in m.finditer(text)] == expected
    assert [x.group().decode("utf-8") for x in m.finditer(text.encode("utf-8"))] == expected
    for cut in range(len(text) + 1):  # crossing_end: the furthest end of any occurrence across the cut
        ends = [s + len(t) for t in specials for s in range(max(0, cut - len(t) + 1), cut) if text.startswith(t, s)]
        assert m.crossing_end(text, cut) == (max(ends) if ends else -1)


def test_matcher_with_tokens_nested_deeper_than_the_trie_limit():
    # "a", "aa", ... 150 deep: past _MAX_TRIE_NESTING the matcher uses the flat alternation.
    specials = ["a" * i for i in range(1, 151)] + ["ab", "b"]
    m = SpecialTokenMatcher(specials)
    text = "a" * 170 + "b" + "a" * 3 + "ab"
    assert [x.group() for x in m.finditer(text)] == [p[0] for p in naive_special_split(text, specials)]


def test_streaming_non_space_class_holds_every_pattern_space():
    # The str cut rule takes any character outside Python's \s as a non-space; that is safe only if
    # every character the GPT-2 pattern's \s matches is in Python's \s.
    import re

    import regex

    every = "".join(map(chr, range(0x110000))).encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    pattern_spaces = "".join(regex.findall(r"\s", every))
    assert pattern_spaces and re.fullmatch(r"\s+", pattern_spaces)


def test_find_safe_cut_never_splits_an_occurrence_or_a_pre_token():
    matcher = SpecialTokenMatcher([EOT, DOUBLE, " a"])
    buf = "one two" + DOUBLE + "x\ny ab"
    cuts = [c for c in range(len(buf) + 1) if find_safe_cut(buf, matcher, c, c) == c]
    assert cuts == [3, 7, 35, 36]  # before " two", before the double (not the single inside it), after "\n", before " a"
    # A token encoding does not take (allowed_special=set()) is plain text: no cut before it, none across it.
    plain, guard = SpecialTokenMatcher([]), SpecialTokenMatcher(["b<", "b"])
    assert [c for c in range(4) if find_safe_cut("ab<", plain, c, c, guard) == c] == []
    assert [c for c in range(8) if find_safe_cut("xy ab< z", plain, c, c, guard) == c] == [2, 6]


# --- cost: no per-special rescans (issue 11, part 4) ----------------------------------------------
def test_many_special_tokens_get_consecutive_ids_and_encode():
    vocab = {i: bytes([i]) for i in range(256)}
    specials = [f"<|extra_{i}|>" for i in range(20_000)]
    tok = Tokenizer(vocab, [], specials)
    assert [tok.special_to_id[t] for t in specials] == list(range(256, 20_256))
    text = f"a<|extra_19999|>b<|extra_1|><|extra_|>"
    assert tok.encode(text) == [97, 20_255, 98, 257] + list(b"<|extra_|>")


def test_streaming_matcher_calls_do_not_grow_with_the_number_of_specials(monkeypatch):
    # Each piece costs a bounded number of matcher calls, whatever the number of special tokens.
    calls = Counter()
    for name in ("search", "crossing_end"):
        real = getattr(SpecialTokenMatcher, name)

        def counting(self, *args, _real=real, _name=name, **kwargs):
            calls[len(self)] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(SpecialTokenMatcher, name, counting)
    text = "Once upon a time there was a cat.\nIt sat on a mat. " * 1500
    vocab = {i: bytes([i]) for i in range(256)}
    for n in (1, 256):
        tok = Tokenizer(vocab, [], [f"<|reserved_special_token_{i}|>" for i in range(n)])
        assert list(tok.encode_iterable([text[i : i + 1000] for i in range(0, len(text), 1000)], piece_chars=4096)) == tok.encode(text)
    pieces = len(text) // 4096 + 1
    assert calls[1] <= 4 * pieces and calls[256] <= 4 * pieces


def test_special_token_pattern_is_a_trie_linear_in_the_tokens():
    # Structure behind the cost claims: shared prefixes are written once (a position is matched by
    # walking one path, not by trying each token), and the pattern grows linearly with the tokens.
    import re

    for n in (10, 2_000, 20_000):
        specials = [f"<|extra_{i}|>" for i in range(n)]
        source = special_matcher(specials).pattern(str).pattern  # shared: the 20,000 set is compiled once per session
        assert source.count(re.escape("<|extra_")) == 1
        assert len(source) <= sum(len(re.escape(t)) for t in specials) + 8 * n
