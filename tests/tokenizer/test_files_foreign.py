"""vocab.json + merges.txt written by other tools load with exactly the ids those tools give (issue 11.3).

Hugging Face `tokenizers`' byte-level BPE trainer writes special tokens into vocab.json verbatim,
not through GPT-2's byte-to-character table: `{"<|endoftext|>": 0, "<|é|>": 1, "!": 2, ...}`.
Every id here is checked against `tokenizers` loading the same files.
"""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tinylm import Tokenizer
from tinylm.errors import TokenizerFileError
from tinylm.tokenizer.files import bytes_to_unicode

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import decoders, models, pre_tokenizers, trainers  # noqa: E402

FIXTURES = Path(__file__).parent.parent / "fixtures"
EOT = "<|endoftext|>"
ISSUE_SPECIALS = [EOT, "<|é|>", "<｜begin▁of▁sentence｜>", "<|my token|>"]
ISSUE_TEXT = "Hello<|é|> wörld <｜begin▁of▁sentence｜>x<|my token|> é <|endoftext|>The end.<|my token|><|é|>"


def hf_train(files: list[str], vocab_size: int, specials: list[str]) -> "tokenizers.Tokenizer":
    """`tokenizers`' byte-level BPE trainer, as its docs and GPT-2-style recipes set it up."""
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    hf.train(files, trainer)
    return hf


def hf_from_files(folder: Path, specials: list[str]) -> "tokenizers.Tokenizer":
    """`tokenizers` loading vocab.json + merges.txt, special tokens added as its docs do."""
    hf = tokenizers.Tokenizer(models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt")))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens(specials)
    return hf


@pytest.fixture(scope="module")
def hf_issue_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hf-issue")
    hf_train([str(FIXTURES / "corpus.en")], 400, ISSUE_SPECIALS).model.save(str(folder))
    return folder


def test_issue_input_special_token_written_verbatim_keeps_its_id(hf_issue_files):
    vocab = json.loads((hf_issue_files / "vocab.json").read_text())
    assert vocab["<|é|>"] == 1  # the issue's file: verbatim, not GPT-2's spelling "<|Ã©|>"
    ours = Tokenizer.from_files(hf_issue_files / "vocab.json", hf_issue_files / "merges.txt", ISSUE_SPECIALS)
    assert [ours.special_to_id[t] for t in ISSUE_SPECIALS] == [0, 1, 2, 3]
    assert ours.vocab_size == 400
    hf = hf_from_files(hf_issue_files, ISSUE_SPECIALS)
    assert ours.encode(ISSUE_TEXT) == hf.encode(ISSUE_TEXT).ids
    assert ours.decode(ours.encode(ISSUE_TEXT)) == ISSUE_TEXT


@pytest.mark.parametrize("special", ["<｜begin▁of▁sentence｜>", "<|my token|>"])
def test_issue_input_special_tokens_outside_the_byte_table_load(tmp_path, special):
    hf_train([str(FIXTURES / "address.txt")], 300, [EOT, special]).model.save(str(tmp_path))
    ours = Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt", [EOT, special])
    text = f"Four score{special} and seven{EOT}{special}"
    assert ours.encode(text) == hf_from_files(tmp_path, [EOT, special]).encode(text).ids
    assert ours.special_to_id[special] == 1


def test_merges_with_and_without_version_line_load_alike(hf_issue_files, tmp_path):
    lines = (hf_issue_files / "merges.txt").read_text().splitlines()
    assert lines[0].startswith("#version")
    (tmp_path / "vocab.json").write_bytes((hf_issue_files / "vocab.json").read_bytes())
    (tmp_path / "merges.txt").write_text("\n".join(lines[1:]) + "\n")
    with_line = Tokenizer.from_files(hf_issue_files / "vocab.json", hf_issue_files / "merges.txt", ISSUE_SPECIALS)
    without = Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt", ISSUE_SPECIALS)
    assert without.merges == with_line.merges
    assert without.encode(ISSUE_TEXT) == hf_from_files(tmp_path, ISSUE_SPECIALS).encode(ISSUE_TEXT).ids


def test_specials_anywhere_in_the_id_range_and_added_after(hf_issue_files, tmp_path):
    """Specials moved into the middle of the ids, plus one only added (HF appends it)."""
    vocab = json.loads((hf_issue_files / "vocab.json").read_text())
    ids = sorted(vocab.values())
    by_id = {i: t for t, i in vocab.items()}
    permuted = {by_id[i]: new for i, new in zip(ids, ids[150:] + ids[:150])}  # specials now at 150..153
    (tmp_path / "vocab.json").write_text(json.dumps(permuted, ensure_ascii=False))
    (tmp_path / "merges.txt").write_bytes((hf_issue_files / "merges.txt").read_bytes())
    specials = ISSUE_SPECIALS + ["<|added later|>"]
    ours = Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt", specials)
    hf = hf_from_files(tmp_path, specials)
    text = ISSUE_TEXT + "<|added later|> again"
    assert ours.encode(text) == hf.encode(text).ids
    assert ours.special_to_id["<|é|>"] == 151 and ours.special_to_id["<|added later|>"] == 400


def test_gpt2_files_with_extra_specials_match_hf(tmp_path):
    extra = ["<|im_start|>", "<|fim▁hole|>"]
    folder = tmp_path
    for name in ("gpt2_vocab.json", "gpt2_merges.txt"):
        (folder / name.removeprefix("gpt2_")).write_bytes((FIXTURES / name).read_bytes())
    ours = Tokenizer.from_files(folder / "vocab.json", folder / "merges.txt", [EOT] + extra)
    hf = hf_from_files(folder, [EOT] + extra)
    text = (FIXTURES / "german.txt").read_text()[:2000] + "<|im_start|>é<|fim▁hole|>" + EOT
    assert ours.encode(text) == hf.encode(text).ids


def test_entry_outside_the_byte_table_not_given_as_special_names_the_entry(hf_issue_files):
    with pytest.raises(TokenizerFileError, match=r"entry '<｜begin▁of▁sentence｜>' \(id 2\).*special_tokens"):
        Tokenizer.from_files(hf_issue_files / "vocab.json", hf_issue_files / "merges.txt", [EOT])


def test_special_that_is_also_a_byte_is_one_clear_error(tmp_path):
    """`tokenizers` gives the special token "é" and byte 0xE9 (spelled "é") one entry: not representable."""
    hf_train([str(FIXTURES / "address.txt")], 300, [EOT, "é"]).model.save(str(tmp_path))
    with pytest.raises(TokenizerFileError, match=r"entry 'é' \(id 1\) is both the special token 'é' and an ordinary token \(byte 233"):
        Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt", [EOT, "é"])


def test_special_spelled_like_a_learned_token_is_one_clear_error(tmp_path):
    hf_train([str(FIXTURES / "address.txt")], 400, [EOT, "Ġthe"]).model.save(str(tmp_path))
    with pytest.raises(TokenizerFileError, match=r"entry 'Ġthe' .*\(merge \d+ makes the ordinary token b' the'"):
        Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt", [EOT, "Ġthe"])


def test_writing_a_special_spelled_like_an_ordinary_token_is_refused(tmp_path):
    byte_vocab = {i: bytes([i]) for i in range(256)}
    tok = Tokenizer(byte_vocab, [], [EOT, "Ġ"])  # "Ġ" is a new token: its UTF-8 bytes are not b" " (spelled "Ġ")
    with pytest.raises(TokenizerFileError, match=r"special token 'Ġ' \(id 257\) is spelled like the ordinary token b' ' \(id 32\)"):
        tok.save_dir(tmp_path / "out")
    assert not (tmp_path / "out" / "vocab.json").exists()


def test_tinylm_files_with_specials_in_byte_spelling_still_load(tmp_path):
    """Files tinylm wrote before specials were written verbatim: "<|Ã©|>" for "<|é|>"."""
    from tinylm import train_bpe
    from tinylm.tokenizer.files import merges_txt_bytes, token_to_str

    specials = [EOT, "<|é|>"]
    vocab, merges = train_bpe(FIXTURES / "address.txt", 300, specials)
    old_style = {token_to_str(tok): idx for idx, tok in vocab.items()}
    assert old_style["<|Ã©|>"] == 1
    (tmp_path / "vocab.json").write_text(json.dumps(old_style, ensure_ascii=False))
    (tmp_path / "merges.txt").write_bytes(merges_txt_bytes(merges))
    again = Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt", specials)
    assert again.vocab == vocab and again.special_to_id == {EOT: 0, "<|é|>": 1}


# --- the whole kind: random corpora and special tokens, trained by `tokenizers` ------------------
# Characters: ASCII, Latin-1 (spelled alike in GPT-2's byte table, the case of the issue), spaces,
# fullwidth bars and SentencePiece's "▁", CJK, an emoji. Kept to characters whose Unicode classes
# `tokenizers`' regex engine and Python's `regex` agree on, so the property tests special tokens
# and files rather than two Unicode databases.
_ALPHABET = "abcdeéèñüß ÄÖ<|>｜▁ 12 !?.,'\n\tαβж中文🙂Ġ"
_BYTE_ALPHABET = set(bytes_to_unicode().values())


def _unrepresentable(special: str) -> bool:
    """Spelled entirely in GPT-2's byte table yet not plain ASCII: may share its entry with an ordinary token."""
    return set(special) <= _BYTE_ALPHABET and not special.isascii()


def _shares_bytes(vocab_keys, special: str) -> bool:
    """Another entry of vocab.json, read in GPT-2's byte table, is the special token's UTF-8 bytes."""
    u2b = {c: b for b, c in bytes_to_unicode().items()}
    return any(e != special and set(e) <= _BYTE_ALPHABET and bytes(u2b[c] for c in e) == special.encode() for e in vocab_keys)


def test_special_with_the_bytes_of_another_entry_is_one_clear_error(tmp_path):
    hf_train([str(FIXTURES / "address.txt")], 300, [EOT, " "]).model.save(str(tmp_path))
    with pytest.raises(TokenizerFileError, match=r"entries ' ' \(id 1\) and 'Ġ' \(id \d+\) are both the bytes b' '"):
        Tokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt", [EOT, " "])


_specials = st.lists(st.text(_ALPHABET, min_size=1, max_size=8), min_size=1, max_size=5, unique=True)


def _text_with(specials):
    piece = st.one_of(st.sampled_from(specials), st.text(_ALPHABET, max_size=20))
    return st.lists(piece, max_size=12).map("".join)


def _hf_trained_files_give_hf_ids(tmp_path_factory, corpus, specials, extra_merges, data):
    assume(not any(_unrepresentable(s) for s in specials))
    folder = tmp_path_factory.mktemp("hf")
    (folder / "corpus.txt").write_text("\n".join(corpus))
    hf = hf_train([str(folder / "corpus.txt")], 256 + len(specials) + extra_merges, specials)
    hf.model.save(str(folder))
    keys = json.loads((folder / "vocab.json").read_text())
    if any(_shares_bytes(keys, s) for s in specials):  # e.g. the special " " beside "Ġ" (byte 32): two ids, one byte string
        with pytest.raises(TokenizerFileError, match="are both the bytes"):
            Tokenizer.from_files(folder / "vocab.json", folder / "merges.txt", specials)
        return
    ours = Tokenizer.from_files(folder / "vocab.json", folder / "merges.txt", specials)
    theirs = hf_from_files(folder, specials)
    for _ in range(3):
        text = data.draw(_text_with(specials))
        assert ours.encode(text) == theirs.encode(text).ids == hf.encode(text).ids
        assert ours.decode(ours.encode(text)) == text


_given = given(
    corpus=st.lists(st.text(_ALPHABET, min_size=1, max_size=60), min_size=1, max_size=20),
    specials=_specials,
    extra_merges=st.integers(0, 60),
    data=st.data(),
)
_checks = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much]
test_hf_trained_files_give_hf_ids = settings(max_examples=20, deadline=None, suppress_health_check=_checks)(_given(_hf_trained_files_give_hf_ids))
test_hf_trained_files_give_hf_ids_500 = pytest.mark.slow(
    settings(max_examples=500, deadline=None, suppress_health_check=_checks)(_given(_hf_trained_files_give_hf_ids))
)
