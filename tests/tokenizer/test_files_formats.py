"""tokenizer.json and .tiktoken out and in (issue 13): ids identical to `tokenizers`, `transformers`
and tiktoken on every fixture, with and without special tokens in the text."""

import base64
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm import Tokenizer, train_bpe
from tinylm.errors import ConfigError, TokenizerFileError
from tinylm.tokenizer.pretokenize import GPT2_PATTERN

tokenizers = pytest.importorskip("tokenizers")

FIXTURES = Path(__file__).parent.parent / "fixtures"
EOT = "<|endoftext|>"
SPECIALS = [EOT, "<|pad|>", "<|im_start|>", "<|im_start|>x"]  # overlapping: longest wins everywhere
FIXTURE_TEXTS = ["address.txt", "corpus.en", "german.txt", "tinystories_sample.txt"]


def _texts() -> list[str]:
    """Every fixture text, once as it is and once with special tokens spliced in."""
    out = []
    for name in FIXTURE_TEXTS:
        text = (FIXTURES / name).read_text()
        third = len(text) // 3
        out += [text, SPECIALS[1] + text[:third] + SPECIALS[3] + text[third : 2 * third] + EOT + text[2 * third :] + SPECIALS[2]]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Tokenizer, Path]:
    """A tokenizer as `tinylm train-bpe` writes it (same save_dir), with its folder."""
    folder = tmp_path_factory.mktemp("tok")
    vocab, merges = train_bpe(FIXTURES / "corpus.en", 1000, SPECIALS)
    tok = Tokenizer(vocab, merges, SPECIALS)
    tok.save_dir(folder)
    return tok, folder


# --- tokenizer.json out ----------------------------------------------------------------------------
def test_tokenizer_json_gives_identical_ids_in_tokenizers(trained):
    tok, folder = trained
    hf = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert hf.get_vocab_size() == tok.vocab_size
    for text in _texts():
        ids = tok.encode(text)
        assert hf.encode(text).ids == ids
        assert hf.decode(ids, skip_special_tokens=False) == text == tok.decode(ids)


def test_tokenizer_json_gives_identical_ids_in_transformers(trained):
    transformers = pytest.importorskip("transformers")
    tok, folder = trained
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    assert len(fast) == tok.vocab_size
    for text in _texts():
        ids = tok.encode(text)
        assert fast(text)["input_ids"] == ids
        assert fast.decode(ids, clean_up_tokenization_spaces=False) == text


def test_tokenizer_json_reads_back_to_the_same_tokenizer(trained):
    tok, folder = trained
    again = Tokenizer.from_file(folder / "tokenizer.json")
    assert again.vocab == tok.vocab and again.merges == tok.merges and again.special_to_id == tok.special_to_id
    assert Tokenizer.from_dir(folder).vocab == tok.vocab  # vocab.json now spells specials verbatim


# --- tokenizer.json in: files written by `tokenizers` -----------------------------------------------
@pytest.fixture(scope="module")
def gpt2_tokenizer_json(tmp_path_factory) -> Path:
    """GPT-2's tokenizer.json as `tokenizers` builds it from GPT-2's vocab.json and merges.txt (offline)."""
    from tokenizers import decoders, models, pre_tokenizers, processors

    hf = tokenizers.Tokenizer(models.BPE.from_file(str(FIXTURES / "gpt2_vocab.json"), str(FIXTURES / "gpt2_merges.txt")))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.post_processor = processors.ByteLevel(trim_offsets=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([EOT])
    path = tmp_path_factory.mktemp("gpt2") / "tokenizer.json"
    hf.save(str(path))
    return path


def test_gpt2_tokenizer_json_written_by_tokenizers_loads_with_its_ids(gpt2_tokenizer_json, tiktoken_gpt2):
    ours = Tokenizer.from_file(gpt2_tokenizer_json)
    hf = tokenizers.Tokenizer.from_file(str(gpt2_tokenizer_json))
    assert ours.vocab_size == 50257 and ours.special_to_id == {EOT: 50256}
    for text in _texts()[::2]:
        text = text + EOT
        assert ours.encode(text) == hf.encode(text).ids == tiktoken_gpt2.encode(text, allowed_special="all")


@pytest.fixture(scope="module")
def small_hf_json(trained) -> Path:
    """The trained tokenizer saved by `tokenizers` itself (its current format: merges as pairs)."""
    path = trained[1] / "hf-saved.json"
    tokenizers.Tokenizer.from_file(str(trained[1] / "tokenizer.json")).save(str(path))
    return path


def test_merges_as_pairs_and_as_strings_load_alike(small_hf_json, trained, tmp_path):
    obj = json.loads(small_hf_json.read_text())
    merges = obj["model"]["merges"]
    as_pairs = [m if isinstance(m, list) else m.split(" ") for m in merges]
    as_strings = [" ".join(m) for m in as_pairs]
    loaded = []
    for form in (as_pairs, as_strings):
        obj["model"]["merges"] = form
        (tmp_path / "t.json").write_text(json.dumps(obj, ensure_ascii=False))
        loaded.append(Tokenizer.from_file(tmp_path / "t.json").merges)
    assert loaded[0] == loaded[1] == trained[0].merges


def test_hf_trained_tokenizer_json_with_specials_and_added_tokens(tmp_path):
    from tokenizers import decoders, models, pre_tokenizers, trainers

    specials = [EOT, "<|é|>", "<｜begin▁of▁sentence｜>", "<|my token|>"]
    hf = tokenizers.Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    hf.train([str(FIXTURES / "corpus.en")], trainer)
    hf.add_tokens(["not special"])  # an added token that is not special: matched in text all the same
    hf.save(str(tmp_path / "tokenizer.json"))
    ours = Tokenizer.from_file(tmp_path / "tokenizer.json")
    for text in _texts()[:4]:
        text = f"<|é|>{text[:3000]}not special<｜begin▁of▁sentence｜> <|my token|>{EOT}"
        assert ours.encode(text) == hf.encode(text).ids


def test_added_tokens_matched_in_two_passes_by_tokenizers(tmp_path, trained):
    """`tokenizers` matches normalized=false added tokens first: "qab" + "bcy" in "qabcy" gives
    ["qa", "bcy"], not tinylm's leftmost ["qab", "c", "y"]; overlapping kinds are refused, others load."""
    from tokenizers import AddedToken

    hf = tokenizers.Tokenizer.from_file(str(trained[1] / "tokenizer.json"))
    hf.add_tokens([AddedToken("qab", normalized=True), AddedToken("<|mask|>", normalized=True)])
    hf.add_special_tokens([AddedToken("bcy", normalized=False, special=True)])
    assert hf.encode("qabcy").tokens[-1] == "bcy"
    hf.save(str(tmp_path / "overlap.json"))
    with pytest.raises(TokenizerFileError, match=r"added tokens 'bcy' \(normalized=false\) and 'qab' \(normalized=true\) together"):
        Tokenizer.from_file(tmp_path / "overlap.json")
    hf = tokenizers.Tokenizer.from_file(str(trained[1] / "tokenizer.json"))
    hf.add_tokens([AddedToken("<|mask|>", normalized=True)])
    hf.save(str(tmp_path / "apart.json"))
    text = "<|pad|>a<|mask|>b<|im_start|>x<|mask|>" + EOT
    assert Tokenizer.from_file(tmp_path / "apart.json").encode(text) == hf.encode(text).ids


def _edit(path: Path, out: Path, change) -> Path:
    obj = json.loads(path.read_text())
    change(obj)
    out.write_text(json.dumps(obj, ensure_ascii=False))
    return out


_UNSUPPORTED = {
    "normalizer": (lambda o: o.update(normalizer={"type": "Lowercase"}), "normalizer 'Lowercase' is unsupported"),
    "nfkc": (lambda o: o.update(normalizer={"type": "Sequence", "normalizers": [{"type": "NFKC"}]}), "normalizer 'Sequence'"),
    "prefix space": (lambda o: o["pre_tokenizer"].update(add_prefix_space=True), "add_prefix_space=true is unsupported"),
    "other pre-tokenizer": (lambda o: o.update(pre_tokenizer={"type": "Whitespace"}), "pre_tokenizer 'Whitespace' is unsupported"),
    "other split pattern": (
        lambda o: o.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r"\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}),
        "pre_tokenizer 'Sequence' is unsupported",
    ),
    "template": (lambda o: o.update(post_processor={"type": "TemplateProcessing", "single": [], "pair": [], "special_tokens": {}}), "post_processor 'TemplateProcessing'"),
    "decoder": (lambda o: o.update(decoder={"type": "WordPiece", "prefix": "##", "cleanup": True}), "decoder 'WordPiece'"),
    "wordpiece": (lambda o: o["model"].update(type="WordPiece"), "model type 'WordPiece' is unsupported"),
    "suffix": (lambda o: o["model"].update(end_of_word_suffix="</w>"), "model.end_of_word_suffix='</w>' is unsupported"),
    "dropout": (lambda o: o["model"].update(dropout=0.1), "model.dropout=0.1 is unsupported"),
    "ignore_merges": (lambda o: o["model"].update(ignore_merges=True), "model.ignore_merges=True is unsupported"),
    "lstrip": (lambda o: o["added_tokens"][0].update(lstrip=True), "added token '<|endoftext|>' with lstrip=true is unsupported"),
    "bad merge": (lambda o: o["model"].update(merges=["a b c"]), "merge 1: expected two tokens"),
    "no model": (lambda o: o.pop("model"), "is not a Hugging Face tokenizer.json"),
}


@pytest.mark.parametrize("case", sorted(_UNSUPPORTED))
def test_unsupported_tokenizer_json_is_one_clear_error(small_hf_json, tmp_path, case):
    change, message = _UNSUPPORTED[case]
    path = _edit(small_hf_json, tmp_path / "tokenizer.json", change)
    with pytest.raises(TokenizerFileError, match=message.replace("(", r"\(").replace("'", "'")):
        Tokenizer.from_file(path)


def test_wordpiece_tokenizer_from_tokenizers_is_refused(tmp_path):
    from tokenizers import models

    tokenizers.Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]")).save(str(tmp_path / "wp.json"))
    with pytest.raises(TokenizerFileError, match="model type 'WordPiece' is unsupported"):
        Tokenizer.from_file(tmp_path / "wp.json")


def test_truncated_tokenizer_json_names_the_file(trained, tmp_path):
    data = (trained[1] / "tokenizer.json").read_bytes()
    (tmp_path / "tokenizer.json").write_bytes(data[: len(data) // 2])
    with pytest.raises(TokenizerFileError, match="tokenizer.json is not valid JSON"):
        Tokenizer.from_file(tmp_path / "tokenizer.json")


# --- .tiktoken out and in -----------------------------------------------------------------------------
def tiktoken_from_folder(folder: Path):
    """The three lines of docs/TOKENIZER.md that build a tiktoken.Encoding from a tinylm folder."""
    tiktoken = pytest.importorskip("tiktoken")
    import tiktoken.load

    specials = {t["content"]: t["id"] for t in json.load(open(folder / "tokenizer.json"))["added_tokens"]}
    return tiktoken.Encoding("my_tokenizer", pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""", mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(folder / "tokenizer.tiktoken")), special_tokens=specials)


@pytest.fixture(autouse=True)
def _no_tiktoken_cache(monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # load_tiktoken_bpe would cache files by path in /tmp


def test_tiktoken_file_gives_identical_ids_in_tiktoken(trained):
    tok, folder = trained
    enc = tiktoken_from_folder(folder)
    for text in _texts():
        ids = tok.encode(text)
        assert enc.encode(text, allowed_special="all") == ids
        assert enc.decode(ids) == text


def test_tiktoken_file_format(trained):
    tok, folder = trained
    lines = (folder / "tokenizer.tiktoken").read_text().splitlines()
    assert len(lines) == tok.vocab_size - len(SPECIALS)
    first, rank = lines[0].split(" ")
    assert base64.b64decode(first) == tok.vocab[int(rank)] and int(rank) == len(SPECIALS)


def test_tiktoken_file_reads_back(trained):
    tok, folder = trained
    again = Tokenizer.from_tiktoken(folder / "tokenizer.tiktoken", pattern="gpt2", special_tokens=tok.special_to_id)
    assert again.vocab == tok.vocab and again.special_to_id == tok.special_to_id
    for text in _texts():
        assert again.encode(text) == tok.encode(text)


@pytest.fixture(scope="module")
def gpt2_tiktoken_file(tmp_path_factory, tiktoken_gpt2) -> Path:
    """GPT-2's ranks as tiktoken.load.dump_tiktoken_bpe writes them (it needs blobfile, so its two lines here)."""

    path = tmp_path_factory.mktemp("tt") / "gpt2.tiktoken"
    ranks = sorted(tiktoken_gpt2._mergeable_ranks.items(), key=lambda item: item[1])
    path.write_bytes(b"".join(base64.b64encode(token) + b" " + str(rank).encode() + b"\n" for token, rank in ranks))
    return path


def test_gpt2_tiktoken_file_written_by_tiktoken_gives_its_ids(gpt2_tiktoken_file, tiktoken_gpt2):
    ours = Tokenizer.from_tiktoken(gpt2_tiktoken_file, pattern="gpt2", special_tokens={EOT: 50256})
    for text in _texts()[::2]:
        text += EOT
        assert ours.encode(text) == tiktoken_gpt2.encode(text, allowed_special="all")


_ANY_TEXT = st.lists(st.one_of(st.sampled_from(SPECIALS), st.text(max_size=30)), max_size=10).map("".join)


def _written_files_agree(trained, text):
    tok, folder = trained
    ids = tok.encode(text)
    assert _cached_hf(folder).encode(text).ids == ids
    assert _cached_tiktoken(folder).encode(text, allowed_special="all") == ids


_quick = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_long = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
test_written_files_agree_with_their_tools_on_any_text = _quick(given(text=_ANY_TEXT)(_written_files_agree))
test_written_files_agree_with_their_tools_on_any_text_3k = pytest.mark.slow(_long(given(text=_ANY_TEXT)(_written_files_agree)))


_tools: dict = {}


def _cached_hf(folder):
    return _tools.setdefault(("hf", folder), tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json")))


def _cached_tiktoken(folder):
    if ("tt", folder) not in _tools:
        _tools[("tt", folder)] = tiktoken_from_folder(folder)
    return _tools[("tt", folder)]


def test_bad_tiktoken_files_name_the_line(tmp_path):
    good = base64.b64encode(b"a").decode()
    cases = {
        f"{good} 0\n{good}\n": "line 2: expected `base64-token rank`",
        f"{good} 0\n@@@ 1\n": "line 2: '@@@' is not base64",
        f"{good} x\n": "line 1: rank 'x' is not a non-negative integer",
        f"{good} 0\n{good} 1\n": "line 2: token b'a' or rank 1 appears twice",
    }
    for text, message in cases.items():
        (tmp_path / "t.tiktoken").write_text(text)
        with pytest.raises(TokenizerFileError, match=message):
            Tokenizer.from_tiktoken(tmp_path / "t.tiktoken")


def test_tiktoken_pattern_and_special_ids_are_checked(trained):
    path = trained[1] / "tokenizer.tiktoken"
    with pytest.raises(ConfigError, match="pattern 'cl100k_base' is unsupported"):
        Tokenizer.from_tiktoken(path, pattern="cl100k_base")
    with pytest.raises(ConfigError, match=r"special token '<\|x\|>' has id 5, which tiktoken file .* gives to b'\\x01'"):
        Tokenizer.from_tiktoken(path, special_tokens={"<|x|>": 5})
    listed = Tokenizer.from_tiktoken(path, pattern=GPT2_PATTERN, special_tokens=[EOT, "<|x|>"])
    assert listed.special_to_id == {EOT: 1000, "<|x|>": 1001}
    with pytest.raises(ConfigError, match="from_tiktoken"):
        Tokenizer.from_file(path)


# --- the command line ------------------------------------------------------------------------------
def test_train_bpe_writes_both_files_and_encode_reads_tokenizer_json(tmp_path):
    import numpy as np
    from click.testing import CliRunner

    from tinylm.cli import main

    def tinylm(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    r = tinylm("train-bpe", FIXTURES / "address.txt", "-v", 300, "-o", tmp_path / "tok", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "tokenizer.json" in r.output and (tmp_path / "tok" / "tokenizer.tiktoken").exists()
    hf_only = tmp_path / "hf-only"
    hf_only.mkdir()
    (hf_only / "tokenizer.json").write_bytes((tmp_path / "tok" / "tokenizer.json").read_bytes())
    for i, source in enumerate((tmp_path / "tok", tmp_path / "tok" / "tokenizer.json", hf_only)):
        r = tinylm("encode", FIXTURES / "tinystories_sample.txt", "-t", source, "-o", tmp_path / f"{i}.npy", "-j", 1, "--no-progress")
        assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["encode", str(FIXTURES / "address.txt"), "-t", str(tmp_path / "tok" / "tokenizer.tiktoken"), "-o", str(tmp_path / "x.npy")])
    assert r.exit_code == 2 and "is a tiktoken rank file" in r.output and not (tmp_path / "x.npy").exists()
    arrays = [np.load(tmp_path / f"{i}.npy") for i in range(3)]
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    assert arrays[0].tolist() == arrays[1].tolist() == arrays[2].tolist() == hf.encode((FIXTURES / "tinystories_sample.txt").read_text()).ids


@pytest.fixture(scope="module")
def gpt2_from_tiktoken_each_backend(gpt2_tiktoken_file):
    from tinylm.tokenizer.fast_encode import c_backend_available

    backends = ["python"] + (["c"] if c_backend_available() else [])
    return [Tokenizer.from_tiktoken(gpt2_tiktoken_file, special_tokens={EOT: 50256}, backend=b) for b in backends]


def _gpt2_ranks_give_tiktoken_ids(gpt2_from_tiktoken_each_backend, tiktoken_gpt2, text):
    expected = tiktoken_gpt2.encode(text, allowed_special="all")
    for tok in gpt2_from_tiktoken_each_backend:
        assert tok.encode(text) == expected


_GPT2_TEXT = st.lists(st.one_of(st.just(EOT), st.text(max_size=40), st.sampled_from([" the", "'s", "  ", "\n\n", "1234", "ünïcödé"])), max_size=12).map("".join)
test_gpt2_ranks_give_tiktoken_ids_on_any_text = _quick(given(text=_GPT2_TEXT)(_gpt2_ranks_give_tiktoken_ids))
test_gpt2_ranks_give_tiktoken_ids_on_any_text_3k = pytest.mark.slow(_long(given(text=_GPT2_TEXT)(_gpt2_ranks_give_tiktoken_ids)))
