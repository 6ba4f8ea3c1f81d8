"""GPT-2 file format: the byte mapping, round trips, and interchange with Hugging Face tokenizers."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylm import Tokenizer, train_bpe
from tinylm.errors import TokenizerFileError
from tinylm.tokenizer.files import bytes_to_unicode, load_merges, load_vocab, save_merges, save_vocab, str_to_token, token_to_str

FIXTURES = Path(__file__).parent.parent / "fixtures"
EOT = "<|endoftext|>"


def test_byte_mapping_is_a_printable_bijection():
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"


def test_gpt2_files_load_and_roundtrip(tmp_path):
    vocab = load_vocab(FIXTURES / "gpt2_vocab.json")
    merges = load_merges(FIXTURES / "gpt2_merges.txt")
    assert len(vocab) == 50257 and len(merges) == 50000
    assert vocab[50256] == EOT.encode() and merges[0] == (b" ", b"t")
    save_vocab(vocab, tmp_path / "v.json")
    save_merges(merges, tmp_path / "m.txt")
    assert load_vocab(tmp_path / "v.json") == vocab
    assert load_merges(tmp_path / "m.txt") == merges


def _hf_byte_level(vocab_path, merges_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers

    hf = tokenizers.Tokenizer(models.BPE.from_file(str(vocab_path), str(merges_path)))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    return hf


def test_files_we_write_load_in_hf_tokenizers(tmp_path):
    vocab, merges = train_bpe(FIXTURES / "corpus.en", 700, [EOT])
    tok = Tokenizer(vocab, merges, [EOT])
    tok.save_dir(tmp_path)
    hf = _hf_byte_level(tmp_path / "vocab.json", tmp_path / "merges.txt")
    for name in ("address.txt", "corpus.en", "german.txt"):
        text = (FIXTURES / name).read_text()
        assert hf.encode(text).ids == tok.encode(text)


def test_files_written_by_hf_tokenizers_load_here(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=[EOT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train([str(FIXTURES / "corpus.en")], trainer)
    hf.model.save(str(tmp_path))
    ours = Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt", [EOT])
    for name in ("address.txt", "tinystories_sample.txt", "german.txt"):
        text = (FIXTURES / name).read_text()
        assert ours.encode(text) == hf.encode(text).ids
        assert ours.decode(ours.encode(text)) == text


def test_token_to_str_matches_fixture_spelling():
    assert token_to_str(b" the") == "Ġthe"
    assert token_to_str("é".encode()) == "Ã©"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.text(max_size=20))
def test_byte_spelling_equals_the_table_character_by_character(token, text):
    """token_to_str / str_to_token (str.translate fast paths) against the table applied per character."""
    table = bytes_to_unicode()
    assert token_to_str(token) == "".join(table[b] for b in token)
    assert str_to_token(token_to_str(token)) == token
    inverse = {c: b for b, c in table.items()}
    if all(c in inverse for c in text):
        assert str_to_token(text) == bytes(inverse[c] for c in text)
    else:
        with pytest.raises(TokenizerFileError, match="outside GPT-2's byte mapping"):
            str_to_token(text)


@pytest.mark.parametrize(
    "text, message",
    [
        ("#version: 0.2\nĠ t\n\na b c\n", r"line 4: expected two tokens"),
        ("Ġ t\nĠ ☃\n", r"line 2: token '☃' has a character outside GPT-2's byte mapping"),
        ("Ġ t\r\nĠt \r\n", r"line 2: expected two tokens"),
    ],
)
def test_bad_merges_lines_are_named(tmp_path, text, message):
    (tmp_path / "merges.txt").write_text(text, encoding="utf-8", newline="")
    with pytest.raises(TokenizerFileError, match=message):
        load_merges(tmp_path / "merges.txt")


def test_merges_file_with_no_merges_loads(tmp_path):
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    assert load_merges(tmp_path / "merges.txt") == []
