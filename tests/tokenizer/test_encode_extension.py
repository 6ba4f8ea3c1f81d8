"""The C encoder (tinylm.tokenizer._bpe_encode) gives exactly the ids of the pure-Python path and
of tiktoken: fixture texts, pre-tokenizer edge cases, arbitrary text (hypothesis; `-m slow` tries
10,000 examples), odd merge lists, threads, pickling and the backend flag."""

import json
import pickle
import random
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm import Tokenizer
from tinylm.errors import ConfigError
from tinylm.tokenizer import _native
from tinylm.tokenizer.pretokenize import special_matcher

try:
    from tinylm.tokenizer import _bpe_encode
except ImportError as exc:  # optional extension: no compiler at install time
    pytest.skip(
        f"C extension tinylm.tokenizer._bpe_encode is not built ({exc}); "
        "build it with `python setup.py build_ext --inplace` or `pip install -e .`",
        allow_module_level=True,
    )

FIXTURES = Path(__file__).parent.parent / "fixtures"
EOT = "<|endoftext|>"
TEXTS = ["address.txt", "german.txt", "tinystories_sample.txt", "corpus.en"]
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

EDGE_CASES = [
    "",
    " ",
    "  ",
    "\n",
    "\n\n\n",
    "x ",
    "x  ",
    "   word",
    "  \nword",
    "\n\n word",
    "\t\t\tword",
    " \u2003word",
    "\u2003\u2003word",
    "a\u00a0b\u2003c",
    "a \u00a0b",
    "\u0085x\u3000 y\u1680z",
    "it's we'll they've I'M you'd she'd 're 'Ve",
    "'S vs 's",
    "'Sam 'Dave 'Tom 'Mary 'LLama 'VEry 'REd 'Ll 'sam 'dave 'tom 'mary 'llama 'very 'red",
    "'s'd'm't'll've're",
    "''s",
    " 's",
    "'",
    "x'",
    "!'s",
    "'sx 'llama 'very 'reed",
    "2024 1,000,000.5 3.14159 007",
    "½ Ⅻ ² ³⁄₄ ① ٣٤ ๓",
    "数字 123 4567 漢字かなカナ 한국어",
    "🙂🙃 emoji 👍🏽 👨‍👩‍👧 🇩🇪",
    "ünïcödé ñ Ελληνικά русский עברית العربية",
    "$$$ ### ... ?!? ---",
    "tabs\tand\r\nwindows\r\n",
    "\x00\x01\x1c\x1d\x1e\x1f\x7f",
    "e\u0301 combining\u0308 marks",
    "\ufeffBOM \u200bzero\u200cwidth",
    f"x{EOT}y{EOT}{EOT} z",
    "<|endoftext",
    " " * 3000 + "x",
    "a" * 5000,
    "ab" * 3000,
    "\n" * 2000,
    "9" * 4000,
    "." * 3000 + "x",
]
SURROGATES = ["a\ud800b", "\udfff", "\ud800", "x\ud83d\ude00y", "\ude00\ud83d", "ok \udc80\udc81 end", f"\ud800{EOT}\udfff"]


@pytest.fixture(scope="module")
def py_tok() -> Tokenizer:
    return Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT], backend="python")


@pytest.fixture(scope="module")
def c_tok() -> Tokenizer:
    return Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT], backend="c")


def assert_same(c_tok, py_tok, text, tt=None):
    expected = py_tok.encode_ordinary(text)
    assert c_tok.encode_ordinary(text) == expected
    assert c_tok.encode(text) == py_tok.encode(text)
    assert_same_array(c_tok, py_tok, text)
    assert_same_counts(text)
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        assert_same_pretokens(text)
    if tt is not None:
        assert expected == tt.encode_ordinary(text)
        assert c_tok.encode(text) == tt.encode(text, allowed_special="all")


def test_backends_in_use(c_tok, py_tok, gpt2_tokenizer):
    assert c_tok.backend == "c" and py_tok.backend == "python"
    assert gpt2_tokenizer.backend == "c"  # the default once built


@pytest.mark.parametrize("name", TEXTS)
def test_fixture_texts(c_tok, py_tok, tiktoken_gpt2, name):
    text = (FIXTURES / name).read_text(encoding="utf-8")
    assert_same(c_tok, py_tok, text, tiktoken_gpt2)
    for piece in text.split(EOT)[:50]:  # many short calls share the cache
        assert c_tok.encode_ordinary(piece) == py_tok.encode_ordinary(piece)


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases(c_tok, py_tok, tiktoken_gpt2, text):
    assert_same(c_tok, py_tok, text, tiktoken_gpt2)
    assert c_tok.decode(c_tok.encode(text)) == text


@pytest.mark.parametrize("text", SURROGATES)
def test_lone_surrogates(c_tok, py_tok, tiktoken_gpt2, text):
    assert_same(c_tok, py_tok, text, tiktoken_gpt2)
    with pytest.raises(UnicodeEncodeError):  # the raw encoder refuses; the Tokenizer retries
        c_tok._fast.encode_ordinary(text)


def test_code_points_at_class_boundaries(c_tok, py_tok):
    """Code points at both sides of every class range edge, plus a random sample, each alone,
    after a space, between letters and in runs (surrogates excluded: they are replaced first)."""
    cps = set(range(0x300))
    for ranges in _native.unicode_class_ranges():
        for a, b in ranges:
            cps.update((a - 1, a, b - 1, b))
    cps.update(random.Random(0).sample(range(0x110000), 5000))
    chars = [chr(c) for c in sorted(cps) if 0 <= c < 0x110000 and not 0xD800 <= c <= 0xDFFF]
    for i in range(0, len(chars), 1024):
        block = chars[i : i + 1024]
        text = "".join(f"{ch} {ch}a{ch}{ch}  {ch}'s\n" for ch in block)
        assert c_tok.encode_ordinary(text) == py_tok.encode_ordinary(text), f"block from U+{ord(block[0]):04X}"


def test_class_tables_are_disjoint_and_match_regex():
    import regex

    letters, numbers, spaces = _native.unicode_class_ranges()
    seen = set()
    for ranges in (letters, numbers, spaces):
        cps = {c for a, b in ranges for c in range(a, b)}
        assert not cps & seen
        seen |= cps
    for cp in (0x20, 0x85, 0xA0, 0x2003, 0x3000, 0xBD, 0x216B, 0xB2, 0x4E00, 0x1F642):
        ch = chr(cp)
        assert (cp in seen) == bool(regex.match(r"[\p{L}\p{N}\s]", ch))


# --- arbitrary text ---------------------------------------------------------------------------
TRICKY = " \t\n\r\x0b\x0c\u00a0\u2003\u3000\u0085'sdmtlvreSDMTLVRE0123456789½Ⅻ²aé数🙂.,!?-_\"$\ufffd\ud800\udc00"
texts = st.one_of(st.text(), st.text(alphabet=TRICKY), st.lists(st.sampled_from(EDGE_CASES[:36] + [EOT]), max_size=8).map("".join))


def _check(c_tok, py_tok, text):
    if "\ud800" not in text and "\udc00" not in text:
        assert_same_pretokens(text)
    assert c_tok.encode_ordinary(text) == py_tok.encode_ordinary(text)
    assert c_tok.encode(text) == py_tok.encode(text)
    assert_same_array(c_tok, py_tok, text)
    assert_same_counts(text)


def assert_same_pretokens(text):
    """The C matcher's pre-token ends (its 64-byte block scanner) == the GPT-2 regex's. Ids alone
    would not show a missed boundary: GPT-2 has no merge across one, so both pieces' ids are the same."""
    from tinylm.tokenizer._native import pretoken_counter
    from tinylm.tokenizer.pretokenize import pretokenize

    ends, pos = [], 0
    for piece in pretokenize(text):
        pos += len(piece.encode("utf-8"))
        ends.append(pos)
    assert pretoken_counter().pretoken_ends(text) == ends


def assert_same_counts(text):
    """Pre-token counts for BPE training: the C matcher and counter == regex + Counter."""
    from tinylm.tokenizer.pretokenize import special_token_regex
    from tinylm.tokenizer.train import count_text

    special_re = special_token_regex([EOT])
    assert count_text(text, special_re) == count_text(text, special_re, backend="python")


def assert_same_array(c_tok, py_tok, text):
    """encode_to_numpy (ids written straight into the array by C) == encode, as uint16."""
    got = c_tok.encode_to_numpy(text)
    assert got.dtype == np.uint16 and got.tolist() == py_tok.encode(text)
    assert py_tok.encode_to_numpy(text).tolist() == got.tolist()


@FAST
@given(text=texts)
def test_arbitrary_text(c_tok, py_tok, text):
    _check(c_tok, py_tok, text)


@pytest.mark.slow
@SLOW
@given(text=texts)
def test_arbitrary_text_10k(c_tok, py_tok, text):
    _check(c_tok, py_tok, text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=TRICKY.replace("\ud800", "").replace("\udc00", ""), max_size=60))
def test_arbitrary_text_vs_tiktoken(c_tok, tiktoken_gpt2, text):
    assert c_tok.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)


# --- merge lists that no trainer would write ----------------------------------------------------
def _random_tokenizers(seed: int, n: int = 30):
    """Vocabularies over 'abc ' with merges in shuffled order and duplicated pairs."""
    rng = random.Random(seed)
    for _ in range(n):
        vocab = {i: bytes([i]) for i in range(256)}
        tokens = [b"a", b"b", b"c", b" "]
        merges = []
        for _ in range(rng.randint(1, 40)):
            a, b = rng.choice(tokens), rng.choice(tokens)
            if a + b not in tokens:
                tokens.append(a + b)
                vocab[len(vocab)] = a + b
            merges.append((a, b))
        rng.shuffle(merges)
        merges += rng.sample(merges, min(3, len(merges)))  # duplicates: the first rank wins
        yield rng, vocab, merges


@pytest.mark.parametrize("seed", range(5))
def test_odd_merge_lists(seed):
    for rng, vocab, merges in _random_tokenizers(seed):
        c = Tokenizer(vocab, merges, backend="c")
        py = Tokenizer(vocab, merges, backend="python")
        for _ in range(40):
            text = "".join(rng.choice("abc  ") for _ in range(rng.randint(0, 40)))
            assert c.encode_ordinary(text) == py.encode_ordinary(text), (merges, text)


def test_small_trained_tokenizer(tmp_path):
    from tinylm import train_bpe

    vocab, merges = train_bpe(FIXTURES / "corpus.en", 600, [EOT], num_workers=1)
    c = Tokenizer(vocab, merges, [EOT], backend="c")
    py = Tokenizer(vocab, merges, [EOT], backend="python")
    text = (FIXTURES / "corpus.en").read_text()[:200_000] + (FIXTURES / "german.txt").read_text()
    assert c.encode(text) == py.encode(text)


# --- cache, threads, pickling, backend flag -----------------------------------------------------
def test_cache_is_bounded_and_results_stay_right(tiktoken_gpt2):
    tok = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT], backend="c")
    text = " ".join(f"x{i}y" for i in range(260_000))  # >200,000 distinct pre-tokens: one clear
    expected = tiktoken_gpt2.encode_ordinary(text)
    assert tok.encode_ordinary(text) == expected
    assert 0 < tok._fast.cache_size <= _bpe_encode.CACHE_ENTRY_LIMIT
    assert tok.encode_ordinary(text) == expected  # warm (partly)
    tok._fast.clear_cache()
    assert tok._fast.cache_size == 0
    assert tok.encode_ordinary(text[:1000]) == tiktoken_gpt2.encode_ordinary(text[:1000])


def _letters(i: int, width: int) -> str:
    return "".join(chr(97 + (i // 26**k) % 26) for k in range(width))


def test_cache_of_9_to_16_byte_pretokens_past_its_clear(tiktoken_gpt2):
    """Pre-tokens of 9..16 bytes (the small cache's two-word keys) with 1..3 ids and with more
    (those go to the general cache), more distinct ones than the small cache holds, twice."""
    tok = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT], backend="c")
    words = [" " + _letters(i, 4) + "ing" * (1 + i % 4) for i in range(140_000)]  # 8..17 bytes, ids vary
    words += [" zqxjkvbw"[: 6 + i % 4] + _letters(i, 3) for i in range(5_000)]  # 9..12 bytes, many ids each
    # the same first 8 bytes, then one of ~10,000 lower-case vocabulary entries: 2..3 ids each, so
    # many small-cache keys that differ only in their second word
    suffixes = sorted(t for t in json.loads((FIXTURES / "gpt2_vocab.json").read_text()) if t.isalpha() and t.islower() and 3 <= len(t) <= 8)
    words += [" between" + t for t in suffixes]
    text = "".join(words)
    expected = tiktoken_gpt2.encode_ordinary(text)
    assert tok.encode_ordinary(text) == expected
    assert 0 < tok._fast.cache_size <= _bpe_encode.CACHE_ENTRY_LIMIT
    assert tok.encode_ordinary(text) == expected


def test_short_pretokens_with_many_ids_survive_a_clear_of_the_general_cache(tiktoken_gpt2):
    """A small-cache entry for a pre-token of up to 16 bytes with more than 3 ids points straight
    into the general cache's arena; when the general cache is cleared (past 200,000 entries: here
    by long pre-tokens) the pointer is stale, and the pre-token must be merged and filed again, not
    read from the reused arena."""
    tok = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT], backend="c")
    many = [" zqxjkvbw"[: 6 + i % 4] + _letters(i, 3) for i in range(3_000)]  # 9..12 bytes, 4+ ids each
    text = "".join(many)
    expected = tiktoken_gpt2.encode_ordinary(text)
    assert sum(len(tiktoken_gpt2.encode_ordinary(w)) > 3 for w in many) > 2_900
    assert tok.encode_ordinary(text) == expected
    assert tok.encode_ordinary(text) == expected  # through the arena pointers
    long_words = "".join(" " + _letters(i, 4) * 5 for i in range(210_000))  # 21 bytes each, distinct
    before = tok._fast.cache_size
    assert tok.encode_to_numpy(long_words).tolist() == tiktoken_gpt2.encode_ordinary(long_words)
    assert tok._fast.cache_size < before + 210_000  # the general cache was cleared on the way
    assert tok.encode_ordinary(text) == expected  # stale pointers: merged again
    assert tok.encode_to_numpy(text).tolist() == expected  # and filed again


def test_threads_share_one_encoder(c_tok, py_tok):
    texts = [(FIXTURES / name).read_text(encoding="utf-8") for name in TEXTS]
    expected = [py_tok.encode(t) for t in texts]
    errors = []

    def work(k):
        for j in range(6):
            i = (k + j) % len(texts)
            if c_tok.encode(texts[i]) != expected[i]:
                errors.append(i)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_pickle_rebuilds_the_encoder(c_tok, py_tok):
    text = (FIXTURES / "german.txt").read_text()
    for tok, backend in ((c_tok, "c"), (py_tok, "python")):
        clone = pickle.loads(pickle.dumps(tok))
        assert clone.backend == backend
        assert clone.encode(text) == tok.encode(text)
    assert pickle.loads(pickle.dumps(c_tok))._fast is not c_tok._fast


def test_encode_file_spawn_workers(c_tok, tmp_path, monkeypatch):
    """Workers started by spawn get the tokenizer by pickle and rebuild the C encoder."""
    import multiprocessing

    import numpy as np

    from tinylm.tokenizer import chunking, token_arrays

    text = ((FIXTURES / "tinystories_sample.txt").read_text() + (FIXTURES / "german.txt").read_text()) * 30
    path = tmp_path / "c.txt"
    path.write_text(text)
    monkeypatch.setattr(chunking, "pool_context", lambda: multiprocessing.get_context("spawn"))
    token_arrays.encode_file(c_tok, path, tmp_path / "t.npy", num_workers=2, chunk_bytes=20_000)
    assert np.load(tmp_path / "t.npy").tolist() == c_tok.encode(text)


def test_backend_flag(monkeypatch):
    vocab = {i: bytes([i]) for i in range(256)}
    with pytest.raises(ConfigError, match="unknown encoder backend"):
        Tokenizer(vocab, [], backend="rust")
    assert Tokenizer(vocab, [], backend="auto").backend == "c"
    monkeypatch.setattr(_native, "_bpe_encode", None)
    with pytest.raises(ConfigError, match="not built"):
        Tokenizer(vocab, [], backend="c")
    tok = Tokenizer(vocab, [], backend="auto")
    assert tok.backend == "python"
    assert tok.encode("héllo") == list("héllo".encode())


def test_raw_encoder_argument_checks():
    letters, numbers, spaces = _native.unicode_class_ranges()
    with pytest.raises(ValueError):
        _bpe_encode.Encoder(list(range(255)), [], letters, numbers, spaces)
    with pytest.raises(ValueError):
        _bpe_encode.Encoder(list(range(256)), [(1, 2, -3)], letters, numbers, spaces)
    with pytest.raises(ValueError):
        _bpe_encode.Encoder(list(range(256)), [], [(0, 0x110001)], numbers, spaces)
    enc = _bpe_encode.Encoder(list(range(256)), [(97, 98, 256)], letters, numbers, spaces)
    assert enc.encode_ordinary("abab cab") == [256, 256, 32, 99, 256]
    with pytest.raises(TypeError):
        enc.encode_ordinary(b"bytes")


# --- the 64-byte block scanner: pre-tokens that cross blocks, contractions at every offset ----
EDGE_TAILS = ["'s", "'ll", "'ve x", "''s", "\n's", "  'd", "é's", "9'm", "x're", "!'t", "  \n x", "   y", " \t\n", "é ", " 1é", "a" * 70]


@pytest.mark.parametrize("tail", EDGE_TAILS)
def test_block_scanner_at_every_offset(c_tok, py_tok, tail):
    """Each tail at each offset 0..139 after short words: every position of a block (64 bytes) and
    of the next, so contractions, white-space runs and non-ASCII bytes meet the block's last bits."""
    for k in range(140):
        text = ("ab c\n" * 40)[:k] + tail + " end's"
        assert_same_pretokens(text)
        assert c_tok.encode(text) == py_tok.encode(text), (k, text)
    assert_same_counts(("ab c\n" * 40) + "".join(EDGE_TAILS) * 20)


ASCII_PARTS = ["'", "s", "ll", "ve", "re", "d", "t", "m", " ", "  ", "\n", "\t", "\r\n", "a", "Bc", "12", "3", "!", "?.", "-", "'S", "x" * 30]


@FAST
@given(parts=st.lists(st.sampled_from(ASCII_PARTS + ["é", "’", "\u00a0", "\u3000", "数"]), min_size=10, max_size=150))
def test_block_scanner_on_long_mostly_ascii_text(c_tok, py_tok, parts):
    _check(c_tok, py_tok, "".join(parts))


OVERLAPPING = [EOT, "<|a|>", "<|a|><|b|>", "<|", "|>|", "é|", "ab", "b"]  # prefixes, nests, overlaps


@pytest.fixture(scope="module")
def overlap_toks() -> tuple[Tokenizer, Tokenizer]:
    return tuple(Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", OVERLAPPING, backend=b) for b in ("c", "python"))


@FAST
@given(parts=st.lists(st.sampled_from(OVERLAPPING + ["<", "|", ">", "a", " ", "é", "x y", "\n", "\ud800"]), max_size=24))
def test_special_tokens_cut_in_c_like_the_python_matcher(overlap_toks, parts):
    """Encoder.encode's own cutting (leftmost, then longest) == SpecialTokenMatcher's, for every allowed set."""
    c, py = overlap_toks
    text = "".join(parts)
    for allowed in ("all", {"<|a|>", "<|", "b"}, {"<|a|><|b|>"}, set()):
        expected = py.encode(text, allowed_special=allowed)
        assert c.encode(text, allowed_special=allowed) == expected
        assert c.encode_to_numpy(text, allowed_special=allowed).tolist() == expected
        assert c.encode_to_numpy(text, np.uint32, allowed_special=allowed).tolist() == expected


def test_ids_past_uint16_use_the_wide_cache_entries(c_tok):
    """Every id shifted by 70,000: the small cache holds int32 ids (3 per entry), not uint16 (6)."""
    shifted = Tokenizer({i + 70_000: t for i, t in c_tok.vocab.items()}, c_tok.merges, backend="c")
    text = "".join((FIXTURES / name).read_text(encoding="utf-8") for name in TEXTS)
    expected = [i + 70_000 for i in c_tok.encode_ordinary(text)]
    assert shifted.encode_ordinary(text) == expected
    assert shifted.encode_ordinary(text) == expected  # warm
    assert shifted.encode_to_numpy(text).tolist() == expected


def test_raw_encode_with_specials():
    letters, numbers, spaces = _native.unicode_class_ranges()
    enc = _bpe_encode.Encoder(list(range(256)), [(97, 98, 256)], letters, numbers, spaces)
    assert enc.encode("ab<s>ab<ss>", [(b"<s>", 300), (b"<ss>", 301), (b"<s", 302)]) == [256, 300, 256, 301]
    assert enc.encode("<s><s>", [(b"<s>", 300)], 2) == bytearray(b"\x2c\x01\x2c\x01")
    assert enc.encode("ab", ()) == enc.encode("ab", None) == enc.encode_ordinary("ab")
    with pytest.raises(TypeError, match="specials"):
        enc.encode("ab", [(b"", 3)])
    with pytest.raises(TypeError, match="specials"):
        enc.encode("ab", [("<s>", 3)])
    with pytest.raises(ValueError, match="specials"):
        enc.encode("ab", [(b"<s>", -1)])
    with pytest.raises(ValueError, match="itemsize"):
        enc.encode("ab", (), 8)

def test_packed_ids_are_a_buffer_that_owns_its_memory():
    """Packed output (itemsize 2 / 4) is written in place and handed over as a PackedIds buffer:
    bytes(), len() in bytes, a writable numpy.frombuffer view that outlives the Encoder."""
    import gc

    letters, numbers, spaces = _native.unicode_class_ranges()
    enc = _bpe_encode.Encoder(list(range(256)), [(97, 98, 256)], letters, numbers, spaces)
    text = "ab<s>" + " ab" * 1000 + " a" * 7 + "x" * 40  # small-cache pieces, a special token, a 40-byte piece
    expected = enc.encode(text, [(b"<s>", 300)])
    for itemsize, dtype in ((2, np.uint16), (4, np.uint32)):
        packed = enc.encode(text, [(b"<s>", 300)], itemsize)
        assert type(packed).__name__ == "PackedIds" and len(packed) == itemsize * len(expected)
        assert bytes(packed) == np.asarray(expected, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
        arr = np.frombuffer(packed, dtype=dtype)
        del packed
        arr[0] += 1  # writable
        assert arr.tolist() == [expected[0] + 1] + expected[1:]
    del enc
    gc.collect()
    assert arr.tolist()[1:] == expected[1:]  # the memory is the array's, not the Encoder's
    empty = _bpe_encode.Encoder(list(range(256)), [], letters, numbers, spaces).encode("", (), 2)
    assert len(empty) == 0 and bytes(empty) == b"" and np.frombuffer(empty, np.uint16).shape == (0,)


@pytest.mark.parametrize("text", ["ab", "ab ab ab", "x" * 30 + "ab", "<big>", "ab" * 20])
def test_packed_uint16_refuses_every_id_that_does_not_fit(text):
    """An id past 65535 in uint16 output is an OverflowError wherever it comes from: a small-cache
    hit or miss, the general cache (pre-tokens over 16 bytes), a special token."""
    letters, numbers, spaces = _native.unicode_class_ranges()
    enc = _bpe_encode.Encoder(list(range(256)), [(97, 98, 70_000), (70_000, 70_000, 70_001)], letters, numbers, spaces)
    for _ in range(2):  # cold, then warm
        with pytest.raises(OverflowError, match="uint16"):
            enc.encode(text, [(b"<big>", 65_536)], 2)
    assert np.frombuffer(enc.encode(text, [(b"<big>", 65_536)], 4), np.uint32).tolist() == enc.encode(text, [(b"<big>", 65_536)])



def test_encode_to_numpy_options(c_tok, py_tok):
    from tinylm.errors import SpecialTokenNotAllowedError

    text = f"Hello{EOT} world.{EOT}{EOT}  end"
    wide = c_tok.encode_to_numpy(text, np.uint32)
    assert wide.dtype == np.uint32 and wide.tolist() == py_tok.encode(text)
    assert c_tok.encode_to_numpy(text, allowed_special=set()).tolist() == py_tok.encode_ordinary(text)
    with pytest.raises(SpecialTokenNotAllowedError):
        c_tok.encode_to_numpy(text, allowed_special=set(), disallowed_special="all")
    assert c_tok.encode_to_numpy(text, np.int64).tolist() == py_tok.encode(text)  # other dtypes: through the list
    assert c_tok.encode_to_numpy("").shape == (0,)
    with pytest.raises(TypeError):
        c_tok.encode_to_numpy(b"bytes")
    with pytest.raises(ValueError, match="itemsize"):
        c_tok._fast.encode_ordinary_bytes("x", 3)
    with pytest.raises(OverflowError, match="uint16"):
        big = Tokenizer({i: bytes([i]) for i in range(256)} | {70_000: b"ab"}, [(b"a", b"b")], backend="c")
        big._fast.encode_ordinary_bytes("ab", 2)


def test_pretoken_counts_gather_until_taken():
    from tinylm.tokenizer._native import pretoken_counter as _c_counter

    counter = _c_counter()
    counter.count_pretokens("the cat and the hat")
    counter.count_pretokens(" the end\n\n")
    assert counter.take_counts() == {b"the": 1, b" cat": 1, b" and": 1, b" the": 2, b" hat": 1, b" end": 1, b"\n\n": 1}
    assert counter.take_counts() == {}  # reset by taking
    counter.count_pretokens("x" * 100_000 + " " + "é" * 50_000)  # long keys, non-ASCII
    assert counter.take_counts() == {b"x" * 100_000: 1, (" " + "é" * 50_000).encode(): 1}
    with pytest.raises(UnicodeEncodeError):
        counter.count_pretokens("a\ud800b")
    counter.take_counts()
    with pytest.raises(TypeError):
        counter.count_pretokens(b"bytes")


def test_many_distinct_pretokens_grow_the_table():
    from tinylm.tokenizer._native import pretoken_counter as _c_counter

    def word(i):  # distinct letter-only words: a, b, ..., z, ba, bb, ...
        out = ""
        while True:
            out = chr(97 + i % 26) + out
            i //= 26
            if not i:
                return out

    words = [word(i) for i in range(50_000)]
    counter = _c_counter()
    counter.count_pretokens(" ".join(words * 2))
    counts = counter.take_counts()
    assert len(counts) == 50_000 + 1  # " " + each word, and the very first word without its space
    assert counts[b"a"] == 1 and counts[b" a"] == 1 and counts[b" " + words[-1].encode()] == 2
    assert sum(counts.values()) == 100_000
    # keys of 9..16 bytes that share their first 8 (the table's second word decides), and longer ones
    long_words = ["abcdefgh" + w for w in words[:20_000]] + ["x" * 17 + w for w in words[:5_000]]
    counter.count_pretokens(" ".join(long_words * 3))
    packed = counter.take_counts_packed()
    counter.add_counts_packed(packed)
    counter.add_counts_packed(packed)
    counts = counter.take_counts()
    assert len(counts) == 25_000 + 1
    assert counts[b" abcdefgh" + words[19_999].encode()] == 6 and counts[b" " + b"x" * 17 + b"a"] == 6
    assert sum(counts.values()) == 2 * 3 * 25_000


def test_count_text_leaves_nothing_behind_and_threads_do_not_mix(monkeypatch):
    """The C counter is one per process: a call stopped half-way must not leak counts into the next,
    and threads counting at once must each get their own text's counts."""
    from tinylm.tokenizer import train as train_mod
    from tinylm.tokenizer._native import pretoken_counter as _c_counter
    from tinylm.tokenizer.pretokenize import special_token_regex
    from tinylm.tokenizer.train import count_text

    _c_counter().count_pretokens("stale words here")  # as if an earlier call died between count and take
    assert count_text("x", None) == {b"x": 1}

    real_split = train_mod.split_on_special

    def interrupted(text, special_re):
        yield from real_split(text, special_re)[:1]
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "split_on_special", interrupted)
    with pytest.raises(KeyboardInterrupt):
        count_text(f"one two{EOT}three", special_token_regex([EOT]))
    monkeypatch.undo()
    assert count_text("y", None) == {b"y": 1}

    texts = [(FIXTURES / name).read_text(encoding="utf-8") for name in TEXTS]
    expected = [count_text(t, None, backend="python") for t in texts]
    results = [None] * len(texts)

    def work(i):
        for _ in range(3):
            results[i] = count_text(texts[i], None)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


def test_counter_methods_refuse_an_uninitialised_encoder():
    bare = _bpe_encode.Encoder.__new__(_bpe_encode.Encoder)
    for method in (bare.take_counts, bare.reset_counts):
        with pytest.raises(RuntimeError, match="not initialized"):
            method()
    with pytest.raises(RuntimeError, match="not initialized"):
        bare.count_pretokens("x")


@settings(max_examples=60, deadline=None)
@given(parts=st.lists(st.text(alphabet=st.sampled_from("ab cé'\n1<|endoftext|>xyzlongerwordsé中"), max_size=60), max_size=6))
def test_packed_counts_sum_like_dicts(parts):
    """take_counts_packed / add_counts_packed (how counting tasks hand counts to the parent) give the
    sum of the tasks' count dicts; count_texts equals counting the joined texts piece by piece."""
    from collections import Counter

    from tinylm.tokenizer._native import make_encoder
    from tinylm.tokenizer.pretokenize import special_token_regex
    from tinylm.tokenizer.train import count_text, count_texts, pack_counts

    special = special_token_regex([EOT])
    merger, expected = make_encoder("auto", list(range(256)), []), Counter()
    for part in parts:
        merger.add_counts_packed(count_texts([part], special, packed=True))
        expected.update(count_text(part, special, backend="python"))
    merger.add_counts_packed(pack_counts({b"extra": 3}))
    expected[b"extra"] += 3
    assert merger.take_counts() == dict(expected)
    assert count_texts(parts, special) == dict(expected - Counter({b"extra": 3}))


def test_add_counts_packed_refuses_a_truncated_buffer_and_adds_nothing():
    from tinylm.tokenizer._native import make_encoder
    from tinylm.tokenizer.train import pack_counts

    counter = make_encoder("auto", list(range(256)), [])
    packed = pack_counts({b"hello": 2, b" world": 5})
    for cut in range(1, len(packed)):
        if cut == len(pack_counts({b"hello": 2})):
            continue  # a whole first entry: a valid buffer of one entry
        with pytest.raises(ValueError, match="truncated"):
            counter.add_counts_packed(packed[:cut])
        assert counter.take_counts() == {}
    counter.add_counts_packed(packed)
    assert counter.take_counts() == {b"hello": 2, b" world": 5}


# --- counting straight from UTF-8 bytes (BPE training) -------------------------------------------
UTF8_BYTES = [b"a", b" ", b"\n", b"'s", b"\xc2\xa0", b"\xc3\xa9", b"\xe2\x80\x99", b"\xf0\x9f\x99\x82", b"<|endoftext|>",
              b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xe0\x9f\xbf", b"\xed\xa0\x80", b"\xed\x9f\xbf", b"\xf0\x80\x80\x80",
              b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff", b"\x80", b"\xbf", b"\xc2", b"\xe2\x80", b"\xf0\x9f\x99"]


@FAST
@given(parts=st.lists(st.sampled_from(UTF8_BYTES), max_size=40), raw=st.binary(max_size=12))
def test_counting_utf8_bytes_checks_them_as_python_decodes(parts, raw):
    """count_pretokens_utf8 takes exactly the bytes Python's strict decoder takes (overlong forms,
    surrogates, past U+10FFFF, truncated: refused, nothing counted), and counts them as count_text."""
    from tinylm.tokenizer._native import pretoken_counter
    from tinylm.tokenizer.train import count_text

    data = b"".join(parts) + raw
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    counter = pretoken_counter()
    counter.reset_counts()
    specials = ((EOT.encode(), 0),)
    assert counter.count_pretokens_utf8(data, specials) is (text is not None)
    got = counter.take_counts()
    if text is None:
        assert got == {}
    else:
        assert got == count_text(text, special_matcher([EOT]), backend="python")


@FAST
@given(parts=st.lists(st.sampled_from(UTF8_BYTES), max_size=40), raw=st.binary(max_size=12))
def test_encoding_utf8_bytes_equals_encoding_their_text(c_tok, py_tok, parts, raw):
    """encode_utf8_to_numpy(data) == encode_to_numpy(data.decode()) on both backends, and the same
    UnicodeDecodeError as bytes.decode where data is not UTF-8."""
    data = b"".join(parts) + raw
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        for tok in (c_tok, py_tok):
            with pytest.raises(UnicodeDecodeError) as got:
                tok.encode_utf8_to_numpy(data)
            assert (got.value.start, got.value.reason) == (exc.start, exc.reason)
        return
    expected = py_tok.encode(text)
    for tok in (c_tok, py_tok):
        assert tok.encode_utf8_to_numpy(data).tolist() == expected
        assert tok.encode_utf8_to_numpy(bytearray(data), np.uint32).tolist() == expected


def test_counting_utf8_bytes_cuts_at_overlapping_special_tokens():
    from tinylm.tokenizer._native import pretoken_counter
    from tinylm.tokenizer.train import count_text

    text = "a<|a|><|b|>b <|a|>x<|c <|a|><|b|><|a|> end" * 3
    counter = pretoken_counter()
    counter.reset_counts()
    toks = ["<|a|>", "<|a|><|b|>", "<|"]
    assert counter.count_pretokens_utf8(text.encode(), tuple((t.encode(), 0) for t in toks))
    assert counter.take_counts() == count_text(text, special_matcher(toks), backend="python")


def test_a_lone_surrogate_text_is_counted_by_the_python_path_beside_the_others():
    from tinylm.tokenizer.train import count_text, count_texts

    texts = ["plain words", "bad \ud800 text here", "more words"]
    expected = {}
    for t in texts:
        for k, v in count_text(t, None, backend="python").items():
            expected[k] = expected.get(k, 0) + v
    assert count_texts(texts, None) == expected


def test_small_cache_is_sized_for_a_long_input_before_it_is_encoded(tiktoken_gpt2):
    """A long input gets a larger small cache at once (about len/128 entries at load 5/8) rather than
    doubling as it fills, even when, as here, its few distinct pre-tokens would never fill it; a short
    one keeps the smallest table. The ids are unchanged."""
    tok = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT], backend="c")
    enc = tok._fast
    unit = " the cat sat"
    ids = tiktoken_gpt2.encode_ordinary(unit)
    assert tok.encode_to_numpy(unit * 1000).tolist() == ids * 1000
    assert enc.small_cache_slots == _bpe_encode.SMALL_CACHE_SLOTS
    n = 500_000  # 6 MB: len/128 = 46,875 entries > 5/8 of 2^16 slots, <= 5/8 of 2^17
    assert tok.encode_to_numpy(unit * n).tolist() == ids * n
    assert enc.small_cache_slots == 2 * _bpe_encode.SMALL_CACHE_SLOTS
    fresh = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT], backend="c")
    assert fresh.encode(unit * n + EOT + unit, allowed_special="all") == ids * n + [50256] + ids
    assert fresh._fast.small_cache_slots == 2 * _bpe_encode.SMALL_CACHE_SLOTS  # the whole input, not a segment


def test_small_cache_grows_to_its_largest_size_then_clears(tiktoken_gpt2):
    """The cache of pre-tokens of up to 16 bytes starts small, doubles as it fills (entries moved,
    batches of lookups in flight around each doubling) and past its largest size is cleared; ids
    stay tiktoken's throughout, cold and warm."""
    tok = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT], backend="c")
    enc = tok._fast
    assert enc.small_cache_slots == 0
    assert tok.encode_ordinary(" the cat") == tiktoken_gpt2.encode_ordinary(" the cat")
    assert enc.small_cache_slots == _bpe_encode.SMALL_CACHE_SLOTS
    words = [" " + _letters(i, 4) for i in range(26**4)]  # 456,976 distinct 5-byte pre-tokens, most 1..3 ids
    sizes, clears = set(), 0
    for start in range(0, len(words), 50_000):
        text = "".join(words[start : start + 50_000])
        expected = tiktoken_gpt2.encode_ordinary(text)
        before = enc.cache_size
        assert tok.encode_ordinary(text) == expected
        sizes.add(enc.small_cache_slots)
        after = enc.cache_size
        assert 0 < after <= _bpe_encode.CACHE_ENTRY_LIMIT
        assert tok.encode_to_numpy(text).tolist() == expected  # warm (or partly, after a clear)
        if after > before:  # no clear in this chunk: every entry is found where it was put
            assert enc.cache_size == after
        else:
            clears += 1
    assert max(sizes) == _bpe_encode.SMALL_CACHE_MAX_SLOTS and len(sizes) > 1 and clears > 0
