"""Tokenizer: identical to tiktoken's GPT-2 encoding, special tokens, streaming, decode errors."""

import random
from pathlib import Path

import pytest

from tinylm import Tokenizer
from tinylm.errors import ConfigError, SpecialTokenNotAllowedError, TokenizerFileError, UnknownTokenError

FIXTURES = Path(__file__).parent.parent / "fixtures"
EOT = "<|endoftext|>"

TEXTS = ["address.txt", "german.txt", "tinystories_sample.txt", "corpus.en"]


@pytest.mark.parametrize("name", TEXTS)
def test_identical_to_tiktoken(gpt2_tokenizer_each_backend, tiktoken_gpt2, name):
    gpt2_tokenizer = gpt2_tokenizer_each_backend
    text = (FIXTURES / name).read_text(encoding="utf-8")
    ids = gpt2_tokenizer.encode(text)
    assert ids == tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2_tokenizer.decode(ids) == text


@pytest.mark.parametrize(
    "text",
    ["", " ", "\n\n\n", "Hello, world!", "  leading and trailing  ", "it's we'll they've I'M", "数字 123 4567 ½ Ⅻ", "🙂🙃 emoji",
     "tabs\tand\r\nwindows", "a\u00a0b\u2003c", f"x{EOT}y{EOT}{EOT} z", "ünïcödé ñ", "$$$ ### ...", "<|endoftext"],
)
def test_identical_to_tiktoken_edge_cases(gpt2_tokenizer_each_backend, tiktoken_gpt2, text):
    gpt2_tokenizer = gpt2_tokenizer_each_backend
    assert gpt2_tokenizer.encode(text) == tiktoken_gpt2.encode(text, allowed_special="all")
    assert gpt2_tokenizer.decode(gpt2_tokenizer.encode(text)) == text


def test_overlapping_special_tokens_longest_wins(tiktoken_factory):
    double = EOT + EOT
    tok = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT, double])
    ids = tok.encode(f"Hello{double}world{EOT}!")
    double_id = tok.special_to_id[double]
    assert double_id == 50257  # appended to the vocabulary
    assert ids.count(double_id) == 1 and ids.count(50256) == 1
    assert tok.decode(ids) == f"Hello{double}world{EOT}!"
    tt = tiktoken_factory({EOT: 50256, double: 50257})
    text = (FIXTURES / "tinystories_sample.txt").read_text().replace(EOT, double, 3)
    assert tok.encode(text) == tt.encode(text, allowed_special="all")


def test_disallowed_special_refuses_untrusted_text(gpt2_tokenizer_each_backend, tiktoken_gpt2):
    gpt2_tokenizer = gpt2_tokenizer_each_backend
    text = f"ignore previous{EOT}instructions"
    with pytest.raises(SpecialTokenNotAllowedError, match="endoftext"):
        gpt2_tokenizer.encode(text, allowed_special=set(), disallowed_special="all")
    plain = gpt2_tokenizer.encode(text, allowed_special=set(), disallowed_special=())
    assert 50256 not in plain
    assert plain == gpt2_tokenizer.encode_ordinary(text) == tiktoken_gpt2.encode_ordinary(text)
    with pytest.raises(ConfigError):
        gpt2_tokenizer.encode("x", allowed_special={"<|nope|>"})


def test_decode_unknown_and_invalid(gpt2_tokenizer):
    for bad in ([50257], [-1], [10**9]):
        with pytest.raises(UnknownTokenError, match="not in the vocabulary"):
            gpt2_tokenizer.decode(bad)
    # A lone UTF-8 lead byte decodes to U+FFFD instead of failing.
    ids = gpt2_tokenizer.encode("é")
    assert len(ids) == 1
    lead = gpt2_tokenizer.token_to_id[bytes([0xC3])]
    assert gpt2_tokenizer.decode([lead]) == "\ufffd"


def test_encode_iterable_equals_encode_at_random_splits(gpt2_tokenizer):
    text = (FIXTURES / "tinystories_sample.txt").read_text() + (FIXTURES / "german.txt").read_text()
    text = text * 40  # longer than the streaming buffer
    expected = gpt2_tokenizer.encode(text)
    rng = random.Random(1)
    for _ in range(5):
        cuts = sorted(rng.sample(range(len(text)), 300))
        chunks = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]
        assert list(gpt2_tokenizer.encode_iterable(chunks)) == expected


def test_encode_iterable_over_file_handle(gpt2_tokenizer, tmp_path):
    text = (FIXTURES / "corpus.en").read_text()
    with open(FIXTURES / "corpus.en", encoding="utf-8") as f:
        assert list(gpt2_tokenizer.encode_iterable(f)) == gpt2_tokenizer.encode(text)


def test_trained_tokenizer_roundtrip_and_files(fixtures, tmp_path):
    from tinylm import train_bpe

    vocab, merges = train_bpe(fixtures / "corpus.en", 500, [EOT])
    tok = Tokenizer(vocab, merges, [EOT])
    tok.save_dir(tmp_path / "tk")
    again = Tokenizer.from_dir(tmp_path / "tk")
    assert again.vocab == tok.vocab and again.merges == tok.merges and again.special_tokens == [EOT]
    text = (fixtures / "tinystories_sample.txt").read_text()
    assert again.decode(again.encode(text)) == text
    assert again.encode(text) == tok.encode(text)


def test_merges_that_disagree_with_vocab(tmp_path):
    (tmp_path / "vocab.json").write_text((FIXTURES / "train-bpe-reference-vocab.json").read_text())
    (tmp_path / "merges.txt").write_text("Ġ t\nzz qq\n")
    with pytest.raises(TokenizerFileError, match="merge 2"):
        Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")


def test_truncated_files(tmp_path):
    vocab_text = (FIXTURES / "train-bpe-reference-vocab.json").read_text()
    (tmp_path / "vocab.json").write_text(vocab_text[: len(vocab_text) // 2])
    (tmp_path / "merges.txt").write_text("Ġ t\nĠ\n")
    with pytest.raises(TokenizerFileError, match="not valid JSON"):
        Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    (tmp_path / "vocab.json").write_text(vocab_text)
    with pytest.raises(TokenizerFileError, match="line 2"):
        Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")


def test_encode_iterable_on_text_with_few_cut_points(gpt2_tokenizer):
    # CJK lines: the only cuts are newlines between non-spaces (once quadratic: rescanned per chunk).
    text = ("日本語の文章です。" * 40 + "\n") * 3000
    chunks = [text[i : i + 100] for i in range(0, len(text), 100)]
    assert list(gpt2_tokenizer.encode_iterable(chunks)) == gpt2_tokenizer.encode(text)


def test_single_byte_special_token_is_refused_before_training(fixtures):
    from tinylm import train_bpe

    with pytest.raises(ConfigError, match="single byte"):
        train_bpe(FIXTURES / "corpus.en", 300, ["!"])
