"""Whole-file encoding to token arrays: parallel == serial == Tokenizer.encode, atomic output."""

import json
from pathlib import Path

import numpy as np
import pytest

from tinylm.errors import InputFileError, OutputError
from tinylm.tokenizer.token_arrays import encode_file, load_info, token_dtype

FIXTURES = Path(__file__).parent.parent / "fixtures"


@pytest.fixture()
def corpus(tmp_path):
    text = ((FIXTURES / "tinystories_sample.txt").read_text() + (FIXTURES / "german.txt").read_text()) * 30
    path = tmp_path / "corpus.txt"
    path.write_text(text)
    return path, text


def test_parallel_equals_serial_equals_encode(gpt2_tokenizer, corpus, tmp_path):
    path, text = corpus
    serial = encode_file(gpt2_tokenizer, path, tmp_path / "a.npy", num_workers=1)
    parallel = encode_file(gpt2_tokenizer, path, tmp_path / "b.npy", num_workers=2, chunk_bytes=3000)
    a = np.load(tmp_path / "a.npy", mmap_mode="r")
    b = np.load(tmp_path / "b.npy", mmap_mode="r")
    assert a.dtype == np.uint16 and a.shape == (serial.num_tokens,)
    assert np.array_equal(a, b)
    assert a.tolist() == gpt2_tokenizer.encode(text)
    assert parallel.num_bytes == len(text.encode())
    assert load_info(tmp_path / "b.npy").num_tokens == serial.num_tokens
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_raw_bin_output(gpt2_tokenizer, corpus, tmp_path):
    path, text = corpus
    encode_file(gpt2_tokenizer, path, tmp_path / "t.bin", num_workers=2, chunk_bytes=5000)
    ids = np.memmap(tmp_path / "t.bin", dtype=np.uint16, mode="r")
    assert ids.tolist() == gpt2_tokenizer.encode(text)
    assert json.loads((tmp_path / "t.bin.json").read_text())["format"] == "bin"


def test_dtype_choice():
    assert token_dtype(50257) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(100_000) == np.uint32


def test_bad_paths(gpt2_tokenizer, corpus, tmp_path):
    path, _ = corpus
    with pytest.raises(InputFileError):
        encode_file(gpt2_tokenizer, tmp_path / "missing.txt", tmp_path / "o.npy")
    with pytest.raises(OutputError):
        encode_file(gpt2_tokenizer, path, tmp_path)  # a directory as output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        encode_file(gpt2_tokenizer, path, blocker / "sub" / "o.npy")


def test_chunk_cuts_after_non_ascii_whitespace_keep_encoding_identical(gpt2_tokenizer, tmp_path):
    # NBSP's last UTF-8 byte is not ASCII whitespace: a byte-level cut rule must still not cut there.
    text = "a\xa0\nb c\u2028\nd\u3000 e " * 400
    path = tmp_path / "ws.txt"
    path.write_text(text)
    encode_file(gpt2_tokenizer, path, tmp_path / "ws.npy", num_workers=2, chunk_bytes=8)
    assert np.load(tmp_path / "ws.npy").tolist() == gpt2_tokenizer.encode(text)


def test_progress_bars_leave_no_thread_so_worker_pools_keep_forking():
    """tqdm starts a monitor thread with its first bar (even a disabled one); ours start none.

    Otherwise a second encode_file / train_bpe in the same script would fall back to forkserver,
    which needs an `if __name__ == "__main__":` guard in the caller's script. (A fresh interpreter:
    other tests may already have started tqdm's monitor in this one.)
    """
    import subprocess
    import sys

    code = (
        "import threading, tqdm\n"
        "from tinylm.progress import progress_bar\n"
        "from tinylm.tokenizer.chunking import pool_context\n"
        "for disable in (True, False):\n"
        "    with progress_bar(total=3, disable=disable, file=open('/dev/null', 'w')) as bar: bar.update(3)\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert pool_context().get_start_method() == 'fork'\n"
        "with tqdm.tqdm(total=1, disable=True): pass\n"  # a caller's own bar starts tqdm's monitor
        "assert threading.active_count() == 2\n"
        "assert pool_context().get_start_method() == 'fork'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("backend", ["c", "python"])
def test_threads_and_processes_give_the_serial_ids(corpus, tmp_path, backend, monkeypatch):
    """With the C encoder pieces are encoded in threads (each its own encoder), else in processes; both
    equal the serial encode, and forcing the other way round gives the same file too."""
    from tinylm.tokenizer import token_arrays
    from tinylm.tokenizer.bpe import Tokenizer

    tok = Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", ["<|endoftext|>"], backend=backend)
    assert token_arrays.use_threads(tok) == (backend == "c")
    path, text = corpus
    encode_file(tok, path, tmp_path / "serial.npy", num_workers=1)
    encode_file(tok, path, tmp_path / "default.npy", num_workers=3, chunk_bytes=2000)
    monkeypatch.setattr(token_arrays, "use_threads", lambda t: backend != "c")
    encode_file(tok, path, tmp_path / "other.npy", num_workers=3, chunk_bytes=2000)
    serial = np.load(tmp_path / "serial.npy")
    assert serial.tolist() == tok.encode(text)
    assert np.array_equal(np.load(tmp_path / "default.npy"), serial)
    assert np.array_equal(np.load(tmp_path / "other.npy"), serial)


def test_for_thread_copies_encode_alike_with_their_own_encoder(gpt2_tokenizer):
    clone = gpt2_tokenizer.for_thread()
    assert clone._fast is not gpt2_tokenizer._fast and clone.vocab is gpt2_tokenizer.vocab
    text = (FIXTURES / "german.txt").read_text() + "<|endoftext|> it's 2024"
    assert clone.encode(text) == gpt2_tokenizer.encode(text)
