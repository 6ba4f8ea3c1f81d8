"""`tinylm generate` at its limits: every finite setting produces text, bad settings are one error line,
a padded model vocabulary never reaches the tokenizer, --num-samples and --no-cache."""

import re

import pytest
import torch
from click.testing import CliRunner

from tinylm import ModelConfig, Tokenizer, TransformerLM
from tinylm.cli import main
from tinylm.training.checkpoint import save_checkpoint

EOT = "<|endoftext|>"


def _run_folder(folder, vocab_size):
    """A run folder (checkpoint + tokenizer) of a freshly initialised model over a 257-id byte tokenizer."""
    Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT]).save_dir(folder)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=vocab_size, context_length=16, d_model=32, num_layers=2, num_heads=4, d_ff=64)
    save_checkpoint(TransformerLM(config), None, 0, folder / "checkpoint.pt", model_config=config.to_dict())
    return folder


@pytest.fixture(scope="module")
def byte_run(tmp_path_factory):
    return _run_folder(tmp_path_factory.mktemp("byte"), 257)


@pytest.fixture(scope="module")
def padded_run(tmp_path_factory):
    """As `tinylm train --set model.vocab_size=320` leaves a run over the byte tokenizer (the
    embedding padded to a multiple of 64); untrained, its near-uniform next-token distribution gives
    the 63 padding ids about one draw in five."""
    return _run_folder(tmp_path_factory.mktemp("padded"), 320)


def _generate(run, *args):
    return CliRunner().invoke(main, ["generate", "--checkpoint", str(run), "--prompt", "Once", *map(str, args)])


def test_a_padded_vocabulary_is_never_sampled(padded_run):
    """Before: `error: token id 267 is not in the vocabulary` (or another padding id)."""
    for seed in range(3):
        res = _generate(padded_run, "--temperature", 1000, "--max-new-tokens", 64, "--seed", seed)
        assert res.exit_code == 0, res.output
        assert res.output.startswith("Once")


@pytest.mark.parametrize("temperature", ["1e-40", "5e-324", "1e-300"])
def test_a_tiny_temperature_prints_the_greedy_text(byte_run, temperature):
    greedy = _generate(byte_run, "--temperature", 0, "--max-new-tokens", 12)
    tiny = _generate(byte_run, "--temperature", temperature, "--max-new-tokens", 12, "--seed", 3)
    assert greedy.exit_code == tiny.exit_code == 0, tiny.output
    assert tiny.output == greedy.output


@pytest.mark.parametrize("temperature", ["1e300", "1.7e308", "3.5"])
def test_large_temperatures_produce_text(byte_run, temperature):
    res = _generate(byte_run, "--temperature", temperature, "--top-p", "1e-300", "--max-new-tokens", 12, "--seed", 1)
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--temperature", "nan", "temperature must be a finite number >= 0"),
        ("--temperature", "inf", "temperature must be a finite number >= 0"),
        ("--temperature", "-1", "temperature must be a finite number >= 0"),
        ("--top-p", "nan", "top_p must be in (0, 1]"),
        ("--top-p", "0", "top_p must be in (0, 1]"),
        ("--top-p", "1.5", "top_p must be in (0, 1]"),
    ],
)
def test_a_bad_sampling_setting_is_one_error_line(byte_run, flag, value, message):
    res = _generate(byte_run, flag, value)
    assert res.exit_code == 2
    assert len(res.output.splitlines()) == 1 and res.output.startswith(f"error: {message}")  # not even the prompt


def test_num_samples_and_no_cache(padded_run):
    single = _generate(padded_run, "--temperature", 0, "--max-new-tokens", 20)
    no_cache = _generate(padded_run, "--temperature", 0, "--max-new-tokens", 20, "--no-cache")
    assert single.exit_code == no_cache.exit_code == 0
    assert no_cache.output == single.output  # (a near-tie could part them; these weights have none)
    batch = _generate(padded_run, "--temperature", 0, "--max-new-tokens", 20, "--num-samples", 3)
    assert batch.exit_code == 0, batch.output
    parts = re.split(r"^--- sample (\d)/3 ---\n", batch.output, flags=re.M)
    assert parts[0] == "" and parts[1::2] == ["1", "2", "3"]
    assert parts[2::2] == [single.output] * 3
    sampled = _generate(padded_run, "--temperature", 1.0, "--max-new-tokens", 20, "--num-samples", 4, "--seed", 0)
    assert sampled.exit_code == 0 and sampled.output.count("--- sample") == 4
