"""Token memmaps and batch sampling."""

import numpy as np
import pytest
import torch

from tinylm.errors import DataError, InputFileError
from tinylm.training import get_batch
from tinylm.training.batches import check_tokens, eval_starts, load_tokens, token_byte_lengths


def test_get_batch_reaches_every_start_and_shifts_targets():
    tokens = np.arange(30, dtype=np.uint16)
    T = 5
    starts = set()
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        x, y = get_batch(tokens, 8, T, "cpu", gen)
        assert x.shape == y.shape == (8, T)
        assert x.dtype == y.dtype == torch.int64
        assert torch.equal(y, x + 1)  # consecutive ids: the target is the next token
        assert torch.equal(x, x[:, :1] + torch.arange(T))
        starts.update(x[:, 0].tolist())
    assert starts == set(range(len(tokens) - T))  # 0 .. 24: the last window ends on the last token


def test_get_batch_honours_device():
    tokens = np.arange(100, dtype=np.uint16)
    x, y = get_batch(tokens, 2, 4, "meta")
    assert x.device.type == y.device.type == "meta"
    x, _ = get_batch(tokens, 2, 4, torch.device("cpu"))
    assert x.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_get_batch_on_cuda():
    x, y = get_batch(np.arange(100, dtype=np.uint16), 2, 4, "cuda")
    assert x.is_cuda and y.is_cuda and torch.equal(y.cpu(), x.cpu() + 1)


def test_get_batch_is_reproducible_with_a_generator():
    tokens = np.arange(1000, dtype=np.uint16)
    a = get_batch(tokens, 4, 8, "cpu", torch.Generator().manual_seed(3))
    b = get_batch(tokens, 4, 8, "cpu", torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0])


def test_load_npy_and_bin_as_memmap(tmp_path):
    data = np.arange(1000, dtype=np.uint16)
    np.save(tmp_path / "t.npy", data)
    data.tofile(tmp_path / "t.bin")
    np.arange(1000, dtype=np.uint32).tofile(tmp_path / "t32.bin")
    a = load_tokens(tmp_path / "t.npy")
    b = load_tokens(tmp_path / "t.bin")
    c = load_tokens(tmp_path / "t32.bin", "uint32")
    assert isinstance(a, np.memmap) and isinstance(b, np.memmap)
    assert np.array_equal(a, data) and np.array_equal(b, data) and np.array_equal(c, data)


def test_bad_token_files_give_clear_errors(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        load_tokens(tmp_path / "missing.bin")
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_tokens(tmp_path / "empty.bin")
    (tmp_path / "odd.bin").write_bytes(b"\x01\x02\x03")
    with pytest.raises(DataError, match="whole number of uint16"):
        load_tokens(tmp_path / "odd.bin")
    np.save(tmp_path / "f.npy", np.zeros(10, dtype=np.float32))
    with pytest.raises(DataError, match="float32"):
        load_tokens(tmp_path / "f.npy")


def test_file_smaller_than_one_example_is_refused():
    with pytest.raises(DataError, match="fewer than one training example"):
        check_tokens(np.arange(16, dtype=np.uint16), vocab_size=100, context_length=16)
    check_tokens(np.arange(17, dtype=np.uint16), vocab_size=100, context_length=16)
    with pytest.raises(DataError, match="fewer than context_length"):
        get_batch(np.arange(16, dtype=np.uint16), 2, 16, "cpu")


def test_ids_outside_the_vocabulary_are_refused():
    with pytest.raises(DataError, match="token id 99"):
        check_tokens(np.arange(100, dtype=np.uint16), vocab_size=64, context_length=8)


def test_eval_starts_are_fixed_and_in_range():
    starts = eval_starts(1000, 16, 10)
    assert starts[0] == 0 and starts[-1] == 1000 - 17 and len(starts) == 10
    assert np.array_equal(starts, eval_starts(1000, 16, 10))


def test_token_byte_lengths_count_each_ids_bytes():
    vocab = {0: b"<|endoftext|>", 1: b"a", 2: b"bc", 3: b"\xc3\xa9"}
    lengths = token_byte_lengths(vocab, 6)  # ids past the vocabulary (a padded model) count 0
    assert lengths.tolist() == [13, 1, 2, 2, 0, 0]


def test_evaluate_bpb_is_nats_over_the_bytes_of_the_predicted_tokens():
    """evaluate_bpb against the formula computed directly with torch: Σ nats / ln 2 / Σ bytes(target)."""
    import math

    import torch

    from tinylm.training.evaluate import evaluate_bpb

    torch.manual_seed(0)
    vocab_size, ctx = 5, 4
    model = torch.nn.Sequential(torch.nn.Embedding(vocab_size, 8), torch.nn.Linear(8, vocab_size))
    tokens = np.array([1, 2, 3, 4, 0, 1, 2, 3, 4, 1, 1, 2], dtype=np.uint16)
    lengths = np.array([13, 1, 2, 2, 3])
    starts = np.array([0, 3, 7])
    ev = evaluate_bpb(model, tokens, starts, ctx, batch_size=2, device="cpu", token_bytes=lengths)
    nats, nbytes = 0.0, 0
    for s in starts:
        x, y = torch.from_numpy(tokens[s : s + ctx].astype(np.int64)), torch.from_numpy(tokens[s + 1 : s + 1 + ctx].astype(np.int64))
        nats += torch.nn.functional.cross_entropy(model(x), y, reduction="sum").item()
        nbytes += int(lengths[y.numpy()].sum())
    assert ev.tokens == 12 and ev.bytes == nbytes and ev.windows == 3
    assert ev.loss == pytest.approx(nats / 12, rel=1e-6) and ev.bpb == pytest.approx(nats / math.log(2) / nbytes, rel=1e-6)
    mean = evaluate_bpb(model, tokens, starts, ctx, 2, "cpu", bytes_per_token=2.5)  # no vocabulary: a mean
    assert mean.bpb == pytest.approx(nats / math.log(2) / (12 * 2.5), rel=1e-6)
