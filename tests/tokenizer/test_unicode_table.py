"""The GPT-2 pre-tokenizer's letter / number / white-space classes are pinned (unicode_table.py,
Unicode 16.0.0) and equal tiktoken 0.14's on every code point, in the table, in the C matcher and
in the Python pattern; ids equal tiktoken's for every code point in contexts that expose its class.

Regression: U+0C5C (a letter only since Unicode 17, which `regex` 2026 carries) made "x\\u0c5c's"
end in the contraction 's; tiktoken, on Unicode 16, reads it as punctuation joined to the quote.
"""

import importlib.util
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm.tokenizer import pretokenize as pt
from tinylm.tokenizer import unicode_table

ROOT = Path(__file__).resolve().parents[2]
OTHER, LETTER, NUMBER, SPACE = 0, 1, 2, 3
NOT_SURROGATE = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_unicode_table", ROOT / "tools" / "gen_unicode_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiktoken_class_of() -> bytes:
    """tiktoken's class of every code point (index = code point), probed from tiktoken itself."""
    pytest.importorskip("tiktoken")
    probed = _generator().tiktoken_classes()
    table = bytearray(0x110000)
    for name, k in (("LETTER", LETTER), ("NUMBER", NUMBER), ("SPACE", SPACE)):
        for c in probed[name]:
            assert table[c] == OTHER, f"U+{c:04X} in two of tiktoken's classes"
            table[c] = k
    return bytes(table)


def _table_class_of() -> bytes:
    table = bytearray(0x110000)
    for k, ranges in zip((LETTER, NUMBER, SPACE), pt.class_ranges()):
        for a, b in ranges:
            table[a:b] = bytes([k]) * (b - a)
    return bytes(table)


def _expected_split(c: str, k: int) -> list[str]:
    """Pre-tokens of "a{c}1{c}!\\n" when c (not ASCII) has class k: a different list per class."""
    return {
        LETTER: ["a" + c, "1", c, "!", "\n"],
        NUMBER: ["a", c + "1" + c, "!", "\n"],
        SPACE: ["a", c, "1", c, "!", "\n"],
        OTHER: ["a", c, "1", c + "!", "\n"],
    }[k]


# --- the table ----------------------------------------------------------------------------------
def test_table_is_what_the_generator_writes():
    pytest.importorskip("unicodedata2", reason="tools/gen_unicode_table.py reads unicodedata2==16.0.0 (test extra)")
    gen = _generator()
    assert unicode_table.UNICODE_VERSION == gen.UNICODE_VERSION == "16.0.0"
    text = gen.render(gen.class_ranges(gen.unicode_database()))
    assert (ROOT / "tinylm" / "tokenizer" / "unicode_table.py").read_text(encoding="utf-8") == text


def test_table_ranges_are_sorted_disjoint_and_in_range():
    seen = set()
    for ranges in pt.class_ranges():
        assert all(0 <= a < b <= 0x110000 for a, b in ranges)
        assert all(b1 < a2 for (_, b1), (a2, _) in zip(ranges, ranges[1:]))  # sorted, maximal runs
        cps = {c for a, b in ranges for c in range(a, b)}
        assert not cps & seen
        seen |= cps


def test_table_equals_tiktoken_on_every_code_point(tiktoken_class_of):
    table = _table_class_of()
    diff = [c for c in NOT_SURROGATE if table[c] != tiktoken_class_of[c]]
    assert not diff, f"{len(diff)} code points differ from tiktoken, first U+{diff[0]:04X}" if diff else ""


def test_c_matcher_reads_the_table_on_every_code_point(tiktoken_class_of):
    from tinylm.tokenizer.train import _c_counter

    counter = _c_counter()
    if counter is None:
        pytest.skip("C extension tinylm.tokenizer._bpe_encode is not built")
    every = "".join(map(chr, NOT_SURROGATE))
    got = counter.classes(every)
    expected = bytes(tiktoken_class_of[c] for c in NOT_SURROGATE)
    diff = [NOT_SURROGATE[i] for i in range(len(got)) if got[i] != expected[i]]
    assert not diff, f"{len(diff)} code points differ, first U+{diff[0]:04X}" if diff else ""


def test_python_pattern_splits_every_bmp_code_point_by_tiktokens_class(tiktoken_class_of):
    chars = [chr(c) for c in NOT_SURROGATE if 0x80 <= c < 0x10000]
    text = "".join(f"a{ch}1{ch}!\n" for ch in chars)
    expected = [p for ch in chars for p in _expected_split(ch, tiktoken_class_of[ord(ch)])]
    got = pt.pretokenize(text)
    assert got == expected or _first_difference(got, expected)


def test_python_stand_ins_keep_the_class_of_every_astral_code_point(tiktoken_class_of):
    """Above U+FFFF the pattern runs on BMP stand-ins of the same class: check every one."""
    astral = "".join(map(chr, range(0x10000, 0x110000)))
    stand_ins = pt._bmp_stand_ins(astral)
    assert len(stand_ins) == len(astral) and max(stand_ins) < "\U00010000"
    wrong = [i + 0x10000 for i, s in enumerate(stand_ins) if tiktoken_class_of[ord(s)] != tiktoken_class_of[i + 0x10000]]
    assert not wrong, f"{len(wrong)} astral code points get a stand-in of another class, first U+{wrong[0]:04X}" if wrong else ""


def test_python_pattern_splits_astral_code_points_by_tiktokens_class(tiktoken_class_of):
    """Every class boundary above U+FFFF (both sides) and a random sample, through pretokenize."""
    cps = {0x10000, 0x10FFFF}
    for ranges in pt.class_ranges():
        for a, b in ranges:
            cps.update(c for c in (a - 1, a, b - 1, b) if 0x10000 <= c < 0x110000)
    cps.update(random.Random(12).sample(range(0x10000, 0x110000), 3000))
    chars = [chr(c) for c in sorted(cps)]
    text = "".join(f"a{ch}1{ch}!\n" for ch in chars)
    expected = [p for ch in chars for p in _expected_split(ch, tiktoken_class_of[ord(ch)])]
    got = pt.pretokenize(text)
    assert got == expected or _first_difference(got, expected)


def _first_difference(got, expected):
    i = next((i for i, (g, e) in enumerate(zip(got, expected)) if g != e), min(len(got), len(expected)))
    pytest.fail(f"pre-token {i}: got {got[i:i + 3]!r}, expected {expected[i:i + 3]!r}")


# --- ids against tiktoken -----------------------------------------------------------------------
def test_regression_u0c5c(gpt2_tokenizer_each_backend, tiktoken_gpt2):
    text = "x\u0c5c's"
    assert tiktoken_gpt2.encode_ordinary(text) == [87, 156, 109, 250, 6, 82]
    assert gpt2_tokenizer_each_backend.encode_ordinary(text) == [87, 156, 109, 250, 6, 82]
    assert gpt2_tokenizer_each_backend.encode(text) == [87, 156, 109, 250, 6, 82]


def _contexts(chars) -> str:
    """Each character after a letter and before the contraction 's: a letter joins the x, a number
    or a space stands alone, punctuation takes the quote (the slow test adds more contexts)."""
    return "".join(f"x{ch}'s\n" for ch in chars)


def test_ids_equal_tiktoken_for_every_code_point_c(gpt2_tokenizer, tiktoken_gpt2):
    if gpt2_tokenizer.backend != "c":
        pytest.skip("C extension tinylm.tokenizer._bpe_encode is not built")
    chars = [chr(c) for c in NOT_SURROGATE]
    for i in range(0, len(chars), 1 << 18):
        text = _contexts(chars[i : i + (1 << 18)])
        assert gpt2_tokenizer.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text), f"block from U+{ord(chars[i]):04X}"


def test_ids_equal_tiktoken_for_every_bmp_code_point_python(tiktoken_gpt2):
    from tests.tokenizer.conftest import EOT, FIXTURES
    from tinylm import Tokenizer

    py = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT], backend="python")
    chars = [chr(c) for c in NOT_SURROGATE if c < 0x10000]
    text = _contexts(chars)
    assert py.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)


@pytest.mark.slow
def test_ids_equal_tiktoken_for_every_code_point_both_backends_many_contexts(gpt2_tokenizer_each_backend, tiktoken_gpt2):
    chars = [chr(c) for c in NOT_SURROGATE]
    for i in range(0, len(chars), 1 << 16):
        block = chars[i : i + (1 << 16)]
        text = "".join(f"x{ch}'s {ch}1 a{ch}b {ch}{ch}  {ch}\t{ch}\n" for ch in block)
        assert gpt2_tokenizer_each_backend.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text), f"block from U+{ord(block[0]):04X}"


# Characters Python's str.isspace or `re`'s \s count as space but White_Space (tiktoken's \s) does not,
# and the White_Space ones outside ASCII.
NOT_WHITE_SPACE = "\x1c\x1d\x1e\x1f\u180e\u200b\u200c\u200d\u2060\ufeff"
WHITE_SPACE = "".join(chr(c) for a, b in pt.class_ranges()[2] for c in range(a, b))


@pytest.mark.parametrize("ch", list(WHITE_SPACE + NOT_WHITE_SPACE), ids=lambda ch: f"U+{ord(ch):04X}")
def test_white_space_class_and_lookahead(gpt2_tokenizer_each_backend, tiktoken_gpt2, ch):
    """Runs of the character before words, numbers, punctuation and the end, with and without
    spaces around (the \\s+(?!\\S) look-ahead leaves the last space to the next pre-token)."""
    parts = [f"a{ch}b", f"a{ch}{ch}b", f"a {ch}b", f"a{ch} b", f"a{ch}{ch} 1", f"x{ch}'s", f"{ch}{ch}", f"a {ch}", f"!{ch}{ch}?", f"{ch}\n{ch} x"]
    for text in parts + ["".join(parts)]:
        assert gpt2_tokenizer_each_backend.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text), repr(text)


# --- fuzzing against tiktoken ---------------------------------------------------------------------
def _boundary_chars() -> list[str]:
    cps = {c for ranges in pt.class_ranges() for a, b in ranges for c in (a - 1, a, b - 1, b)}
    return [chr(c) for c in sorted(cps) if 0 <= c < 0x110000 and not 0xD800 <= c <= 0xDFFF]


ASCII_TRICKY = list(" \t\n\r\x0b\x0c'sdmtlvreSDMTLVRE0123456789aZ.,!?-\"$")
FUZZ_CHARS = st.one_of(
    st.sampled_from(ASCII_TRICKY),
    st.sampled_from(_boundary_chars()),
    st.sampled_from(list(WHITE_SPACE + NOT_WHITE_SPACE)),
    st.characters(blacklist_categories=("Cs",)),
)
FUZZ_TEXT = st.lists(FUZZ_CHARS, max_size=40).map("".join)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(text=FUZZ_TEXT)
def test_fuzz_ids_equal_tiktoken(gpt2_tokenizer_each_backend, tiktoken_gpt2, text):
    assert gpt2_tokenizer_each_backend.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)


@pytest.mark.slow
@SLOW
@given(text=FUZZ_TEXT)
def test_fuzz_ids_equal_tiktoken_10k(gpt2_tokenizer_each_backend, tiktoken_gpt2, text):
    assert gpt2_tokenizer_each_backend.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)
