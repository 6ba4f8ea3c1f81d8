"""Bad corpora: one clear error naming the file and the line (JSON Lines) or row (Parquet); with
skip_bad_records the bad records are counted and the rest equals the .txt of the good ones; a
missing optional package names the extra; nothing is left under the output name."""

import builtins
import gzip
import importlib
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tinylm import Tokenizer, train_bpe
from tinylm.corpus import ReadOptions, ReadStats
from tinylm.errors import CorpusError, InputFileError, InvalidUTF8Error, MissingExtraError
from tinylm.tokenizer.token_arrays import encode_file
from tinylm.tokenizer.stats import sample_documents

_spec = importlib.util.spec_from_file_location("corpus_writers", Path(__file__).parent / "writers.py")
writers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(writers)
EOT = writers.EOT

GOOD = [json.dumps({"text": f"document number {i}, with some words"}) for i in range(6)]
BAD_LINES = {  # a bad record -> words its message holds
    "{not json": ["line 4", "invalid JSON"],
    json.dumps({"body": "x"}): ["line 4", "no field 'text'", "--text-field"],
    json.dumps({"text": 42}): ["line 4", "field 'text' is a JSON int, not a string"],
    json.dumps({"text": None}): ["line 4", "JSON null"],
    json.dumps(["text"]): ["line 4", "JSON list, not an object"],
    '{"text": "\xff"}': ["line 4", "invalid JSON"],  # written as latin-1 below: not UTF-8
}


def _byte_tokenizer():
    return Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT])


def _jsonl_with(path: Path, bad: str, compression: str = "") -> Path:
    lines = GOOD[:3] + [bad] + GOOD[3:]
    data = ("\n".join(lines) + "\n").encode("latin-1" if "\xff" in bad else "utf-8")
    path.write_bytes(writers.compress(data, compression))
    return path


def _every_reader(spec, tmp_path, **options):
    """Run all three readers (training, encoding, stats) on spec with ReadOptions(**options)."""
    read = ReadStats()
    opts = ReadOptions(**options)
    yield lambda: train_bpe(spec, 300, [EOT], num_workers=1, read_options=opts)
    yield lambda: encode_file(_byte_tokenizer(), spec, tmp_path / "o.npy", num_workers=1, read_options=opts, read_stats=read)
    yield lambda: sample_documents(spec, EOT, 10, read_options=opts, read_stats=read)


@pytest.mark.parametrize("bad", list(BAD_LINES), ids=["invalid-json", "missing-field", "int-value", "null-value", "not-an-object", "not-utf8"])
@pytest.mark.parametrize("compression", ["", ".zst"])
def test_a_bad_record_is_one_error_naming_file_and_line(tmp_path, bad, compression):
    path = _jsonl_with(tmp_path / f"c.jsonl{compression}", bad, compression)
    for run in _every_reader(path, tmp_path):
        with pytest.raises(CorpusError) as err:
            run()
        assert str(path) in str(err.value) and "--skip-bad-records" in str(err.value)
        for word in BAD_LINES[bad]:
            assert word in str(err.value)
    assert not (tmp_path / "o.npy").exists() and [p.name for p in tmp_path.iterdir()] == [path.name]  # no output, no temporaries


def test_line_numbers_count_from_the_file_start_in_a_later_piece(tmp_path):
    lines = [json.dumps({"text": f"record {i} " + "w" * 50}) for i in range(200)]
    lines[150] = "{broken"
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorpusError, match=r"c.jsonl: line 151: invalid JSON"):
        encode_file(_byte_tokenizer(), path, tmp_path / "o.npy", num_workers=2, chunk_bytes=1000)


def test_skip_bad_records_counts_them_and_equals_the_txt_of_the_good_ones(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join([GOOD[0], "{bad", GOOD[1], json.dumps({"text": 1}), "", GOOD[2]]) + "\n")
    good = [json.loads(line)["text"] for line in GOOD[:3]]
    txt = tmp_path / "good.txt"
    txt.write_text(EOT.join(good))
    tok = _byte_tokenizer()
    read = ReadStats()
    encode_file(tok, path, tmp_path / "o.npy", read_options=ReadOptions(skip_bad_records=True), read_stats=read)
    assert np.load(tmp_path / "o.npy").tolist() == tok.encode(txt.read_text())
    assert (read.skipped, read.documents) == (2, 3)  # the blank line is no record
    assert read.first_skipped.startswith(f"{path}: line 2: invalid JSON")
    assert "skipped 2 bad record(s)" in read.summary()
    assert train_bpe(path, 300, [EOT], read_options=ReadOptions(skip_bad_records=True)) == train_bpe(txt, 300, [EOT])


def test_skipping_every_record_of_the_first_shards_adds_no_separator(tmp_path):
    # The first shard's only record is bad: the corpus starts with the second shard's document, no <|endoftext|> before it.
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "a.jsonl").write_text("{bad\n")
    (folder / "b.jsonl").write_text(GOOD[0] + "\n" + GOOD[1] + "\n")
    tok = _byte_tokenizer()
    for workers in (1, 2):
        info = encode_file(tok, folder, tmp_path / "o.npy", num_workers=workers, read_options=ReadOptions(skip_bad_records=True))
        expected = EOT.join(json.loads(line)["text"] for line in GOOD[:2])
        assert np.load(tmp_path / "o.npy").tolist() == tok.encode(expected)
        assert info.num_bytes == len(expected.encode())


@pytest.mark.parametrize("compression", [".gz", ".bz2", ".xz", ".zst"])
@pytest.mark.parametrize("fmt", [".jsonl", ".txt"])
def test_a_truncated_compressed_stream_is_one_error_naming_the_file(tmp_path, fmt, compression):
    docs = [f"document {i} " + "text " * 400 for i in range(200)]
    path = writers.write_shard(tmp_path / f"c{fmt}{compression}", docs)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    for run in _every_reader(path, tmp_path):
        with pytest.raises(CorpusError, match="truncated or corrupt") as err:
            run()
        assert str(path) in str(err.value)
        if fmt == ".jsonl":  # how far it got: the last whole line, or none
            assert re.search(r"after line \d+$|before the end of line 1$", str(err.value))
    assert not (tmp_path / "o.npy").exists()


def test_a_skipped_record_does_not_hide_a_truncated_stream(tmp_path):
    path = _jsonl_with(tmp_path / "c.jsonl.gz", "{bad", ".gz")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorpusError, match="truncated"):
        train_bpe(path, 300, [EOT], read_options=ReadOptions(skip_bad_records=True))


def test_parquet_without_the_column_or_with_a_non_string_one(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"content": ["a", "b"], "n": [1, 2]}), path)
    with pytest.raises(CorpusError, match=r"c.parquet: no column 'text' \(columns: 'content', 'n'; choose one with --text-field\)"):
        train_bpe(path, 300, [EOT])
    with pytest.raises(CorpusError, match="column 'n' holds int64, not strings"):
        encode_file(_byte_tokenizer(), path, tmp_path / "o.npy", read_options=ReadOptions(text_field="n"))
    assert not (tmp_path / "o.npy").exists()


def test_parquet_null_is_a_bad_row_named_by_number(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": pa.array(["a", "b", "c", None, "e"], pa.string())}), path, row_group_size=2)
    with pytest.raises(CorpusError, match=r"c.parquet: row 3: column 'text' is null"):
        train_bpe(path, 300, [EOT])
    tok = _byte_tokenizer()
    read = ReadStats()
    encode_file(tok, path, tmp_path / "o.npy", read_options=ReadOptions(skip_bad_records=True), read_stats=read)
    assert np.load(tmp_path / "o.npy").tolist() == tok.encode(EOT.join("abce")) and read.skipped == 1


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "c.parquet"
    path.write_bytes(b"PAR1 but not really" * 10)
    with pytest.raises(CorpusError, match="c.parquet: not a readable Parquet file"):
        train_bpe(path, 300, [EOT])


def test_unknown_extensions_in_a_folder_and_compressed_names(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "a.jsonl").write_text(GOOD[0] + "\n")
    (folder / "notes.csv").write_text("a,b\n")
    with pytest.raises(CorpusError, match=r"notes.csv: unknown corpus file extension '.csv'"):
        train_bpe(folder, 300, [EOT])
    (tmp_path / "x.csv.gz").write_bytes(gzip.compress(b"a,b\n"))
    with pytest.raises(CorpusError, match="unknown corpus file extension '.csv.gz'"):
        encode_file(_byte_tokenizer(), tmp_path / "x.csv.gz", tmp_path / "o.npy")
    (tmp_path / "x.parquet.gz").write_bytes(gzip.compress(b"PAR1"))
    with pytest.raises(CorpusError, match="not .parquet"):
        train_bpe(tmp_path / "x.parquet.gz", 300, [EOT])


def test_a_glob_that_matches_nothing_and_an_empty_shard(tmp_path):
    with pytest.raises(InputFileError, match="no corpus file matches"):
        train_bpe(str(tmp_path / "*.jsonl"), 300, [EOT])
    (tmp_path / "a.jsonl").write_bytes(b"")
    with pytest.raises(InputFileError, match="empty: .*a.jsonl"):
        train_bpe(str(tmp_path / "*.jsonl"), 300, [EOT])


def test_invalid_utf8_in_a_compressed_txt_names_the_offset(tmp_path):
    path = tmp_path / "c.txt.gz"
    path.write_bytes(gzip.compress(b"good text " * 500 + b"\xe2\x28\xa1"))
    with pytest.raises(InvalidUTF8Error, match=r"c.txt.gz: invalid UTF-8 at byte offset 5000"):
        train_bpe(path, 300, [EOT])


@pytest.mark.parametrize("name, package", [("c.parquet", "pyarrow"), ("c.jsonl.zst", "zstandard")])
def test_a_missing_optional_package_names_the_extra(tmp_path, monkeypatch, name, package):
    writers.write_shard(tmp_path / name, ["a doc"])
    real_import = builtins.__import__

    def without(module, *args, **kwargs):
        if module.split(".")[0] == package:
            raise ImportError(f"No module named {package!r}")
        return real_import(module, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)
    monkeypatch.setattr(importlib, "import_module", lambda module, package=None: without(module))
    with pytest.raises(MissingExtraError, match=rf"optional package '{package}': pip install 'tinylm\[corpus\]'"):
        train_bpe(tmp_path / name, 300, [EOT], num_workers=1)
