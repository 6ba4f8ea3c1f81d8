"""The whole kind: any documents, any special-token set, any format, any piece size give what the
corpus's .txt conversion gives, for pre-token counts (BPE training's input) and for encoding.

Documents are drawn over a small alphabet with fragments of the separator (so records hold
separators, halves of them, and doubles); special-token sets with and without the separator and
with tokens that reach across it (<|endoftext|><|endoftext|>, x<|endoftext|>), which take the
one-stream path. Pieces of 1 to 40 bytes put cuts everywhere.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm import Tokenizer
from tinylm.tokenizer.chunking import separator_stands_alone
from tinylm.tokenizer.token_arrays import encode_file
from tinylm.tokenizer.train import count_corpus_pretokens, count_pretokens

_spec = importlib.util.spec_from_file_location("corpus_writers", Path(__file__).parent / "writers.py")
writers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(writers)
EOT = writers.EOT

_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=_CHECKS)
SLOW = settings(max_examples=1_500, deadline=None, suppress_health_check=_CHECKS)

SPECIAL_SETS = [[EOT], [EOT, EOT + EOT], [EOT, "x" + EOT], ["<|pad|>"], [], [EOT, "<|end"], [EOT, "<|pad|>"]]
TEXT = st.lists(st.one_of(st.text("ab <|>é日\n\t'x", max_size=8), st.sampled_from([EOT, "<|end", "oftext|>", EOT + EOT, "x"])), max_size=6).map("".join)
CASES = dict(docs=st.lists(st.lists(TEXT, max_size=5), min_size=1, max_size=3), specials=st.sampled_from(SPECIAL_SETS),
             kinds=st.lists(st.sampled_from(writers.KINDS), min_size=3, max_size=3), piece=st.integers(1, 40))

_MERGES = [(b" ", b"a"), (b"a", b"b"), (b"<", b"|"), (b"|", b">"), (b"\xc3", b"\xa9"), (b"\n", b"\n"), (b"x", b"<")]


def _tokenizer(specials) -> Tokenizer:
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in _MERGES:
        vocab[len(vocab)] = a + b
    return Tokenizer(vocab, list(_MERGES), specials)


def _write_corpus(folder: Path, docs, kinds) -> tuple[Path, str]:
    """Shards of the drawn kinds in a folder (a .txt shard needs text: one holding none is left out)."""
    folder.mkdir()
    used = []
    for i, (shard_docs, (fmt, comp)) in enumerate(zip(docs, kinds)):
        if fmt in (".txt", ".jsonl", ".json") and not comp and not shard_docs or fmt == ".txt" and not EOT.join(shard_docs):
            continue  # an empty file is an error (tests/corpus/test_errors.py); a .txt shard holding "" would be one
        writers.write_shard(folder / f"{i}{fmt}{comp}", shard_docs, row_group_size=2)
        used.append(shard_docs)
    return folder, writers.as_txt(used)


def _check(tmp_path_factory, docs, specials, kinds, piece):
    folder, text = _write_corpus(tmp_path_factory.mktemp("c") / "shards", docs, kinds)
    if not any(folder.iterdir()):
        return
    txt = folder.parent / "all.txt"
    txt.write_bytes(text.encode("utf-8"))
    counts, read, text_bytes = count_corpus_pretokens(folder, specials, num_workers=1, chunk_bytes=piece, scan_bytes=piece)
    expected = dict(count_pretokens(txt, specials, num_workers=1).items_bytes()) if text else {}
    assert dict(counts.items_bytes()) == expected
    assert text_bytes == len(text.encode("utf-8"))
    tok = _tokenizer(specials)
    encode_file(tok, folder, folder.parent / "o.npy", num_workers=1, chunk_bytes=piece, scan_bytes=piece)
    assert np.load(folder.parent / "o.npy").tolist() == tok.encode(text)


@PROPS
@given(**CASES)
def test_corpus_counts_and_ids_equal_its_txt(tmp_path_factory, docs, specials, kinds, piece):
    _check(tmp_path_factory, docs, specials, kinds, piece)


@pytest.mark.slow
@SLOW
@given(**CASES)
def test_corpus_counts_and_ids_equal_its_txt_1500(tmp_path_factory, docs, specials, kinds, piece):
    _check(tmp_path_factory, docs, specials, kinds, piece)


def test_separator_stands_alone_only_when_no_token_reaches_across_it():
    assert separator_stands_alone(EOT, [EOT]) and separator_stands_alone(EOT, [EOT, "<|pad|>", "<|end"])
    assert not separator_stands_alone(EOT, [])  # encoded as text: "x.<|" would be one pre-token
    assert not separator_stands_alone(EOT, [EOT, EOT + EOT])  # a double reaches across the second's start
    assert not separator_stands_alone(EOT, [EOT, "x" + EOT])  # starts before it
    assert not separator_stands_alone(EOT, [EOT, EOT + "x"])  # the lead separator would not be one id
    assert not separator_stands_alone(EOT, [EOT, "a<|end"])  # ends inside it: "a<|end" is taken before it
    assert separator_stands_alone(EOT, [EOT, "|>ab"])  # only reaches across its end, where no piece is cut
