"""Sampling: greedy determinism, nucleus filtering, stopping, safe prompts, streaming UTF-8."""

import types

import pytest
import torch

from tinylm import ModelConfig, Tokenizer, TransformerLM
from tinylm.errors import SpecialTokenNotAllowedError
from tinylm.generate import generate, generate_ids, stream, top_p_filter

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer({i: bytes([i]) for i in range(256)}, [], [EOT])  # bytes are ids; EOT = 256


class Scripted(torch.nn.Module):
    """Greedy output is `script[i]` for the i-th generated token, whatever the input."""

    def __init__(self, script, prompt_len, vocab=257, context_length=64):
        super().__init__()
        self.script, self.prompt_len, self.vocab = script, prompt_len, vocab
        self.config = types.SimpleNamespace(context_length=context_length)
        self.seen = []
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids):
        self.seen.append(ids.shape[-1])
        i = min(len(self.seen) - 1, len(self.script) - 1)
        logits = torch.full((1, ids.shape[-1], self.vocab), -10.0)
        logits[0, -1, self.script[i]] = 10.0
        return logits


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.05, 0.5, 0.15, 0.3])
    torch.testing.assert_close(top_p_filter(probs, 0.8), torch.tensor([0, 0.5, 0, 0.3]) / 0.8)
    torch.testing.assert_close(top_p_filter(probs, 0.81), torch.tensor([0, 0.5, 0.15, 0.3]) / 0.95)
    torch.testing.assert_close(top_p_filter(probs, 0.1), torch.tensor([0, 1.0, 0, 0]))
    torch.testing.assert_close(top_p_filter(probs, 1.0), probs)


def test_top_p_matches_a_brute_force_reference():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        probs = torch.softmax(torch.randn(30, generator=gen) * 2, dim=-1)
        p = float(torch.rand(1, generator=gen))
        order = sorted(range(30), key=lambda i: -probs[i].item())
        kept, mass = [], 0.0
        for i in order:
            kept.append(i)
            mass += probs[i].item()
            if mass >= p:
                break
        out = top_p_filter(probs, p)
        assert set(torch.nonzero(out).flatten().tolist()) == set(kept)
        assert out.sum().item() == pytest.approx(1.0)


def test_sampling_never_leaves_the_nucleus(tokenizer):
    model = Scripted([65], prompt_len=1)
    model.forward = lambda ids: torch.log(torch.tensor([0.6, 0.25, 0.1, 0.05] + [1e-9] * 253)).expand(1, ids.shape[-1], 257)
    ids = list(generate_ids(model, [1], 300, temperature=1.0, top_p=0.8, seed=0))
    assert set(ids) == {0, 1}


def _tiny_lm():
    torch.manual_seed(0)
    return TransformerLM(ModelConfig(vocab_size=257, context_length=8, d_model=32, num_layers=1, num_heads=4, d_ff=64))


def test_greedy_is_deterministic_and_is_the_argmax(tokenizer):
    model = _tiny_lm()
    a = list(generate_ids(model, [72, 105], 12, temperature=0))
    b = list(generate_ids(model, [72, 105], 12, temperature=0))
    assert a == b and len(a) == 12  # the prompt (2) + 12 > context 8: the window slides
    ids = [72, 105]
    with torch.no_grad():
        for _ in range(12):
            ids.append(int(model(torch.tensor([ids[-8:]]))[0, -1].argmax()))
    assert ids[2:] == a


def test_seeded_sampling_repeats(tokenizer):
    model = _tiny_lm()
    runs = [generate(model, tokenizer, "Hi", 10, temperature=1.0, top_p=0.9, seed=5) for _ in range(2)]
    assert runs[0] == runs[1]


def test_stops_at_end_of_text(tokenizer):
    model = Scripted([ord("o"), ord("k"), 256, ord("x")], prompt_len=2)
    assert generate(model, tokenizer, "hi", 50, temperature=0) == "ok"
    assert len(model.seen) == 3  # nothing generated after <|endoftext|>


def test_prompt_cannot_forge_special_tokens(tokenizer):
    model = Scripted([ord("a")], prompt_len=1)
    with pytest.raises(SpecialTokenNotAllowedError):
        generate(model, tokenizer, f"story{EOT}", 3, temperature=0)
    assert generate(model, tokenizer, f"story{EOT}", 3, temperature=0, allow_special=True) == "aaa"


def test_streaming_yields_whole_characters(tokenizer):
    e_acute = "é".encode()
    model = Scripted([ord("a"), e_acute[0], e_acute[1], ord("b"), 256], prompt_len=1)
    pieces = list(stream(model, tokenizer, "x", 10, temperature=0))
    assert pieces == ["a", "é", "b"]
    seen = []
    assert generate(Scripted([ord("a"), 256], 1), tokenizer, "x", 5, temperature=0, callback=seen.append) == "a" == "".join(seen)


def test_bad_sampling_settings(tokenizer):
    from tinylm.errors import ConfigError

    model = Scripted([65], 1)
    with pytest.raises(ConfigError, match="top_p"):
        generate(model, tokenizer, "x", 2, top_p=0)
    with pytest.raises(ConfigError, match="temperature"):
        generate(model, tokenizer, "x", 2, temperature=-1)
    with pytest.raises(ConfigError, match="empty"):
        generate(model, tokenizer, "", 2)


class Recording(Scripted):
    """Scripted, also keeping every id the model was shown."""

    def forward(self, ids):
        self.ids = getattr(self, "ids", set()) | set(ids.flatten().tolist())
        return super().forward(ids)


@pytest.mark.parametrize("near_miss", ["<|endoftext", "endoftext|>", "<|endoftext |>", "<|ENDOFTEXT|>", "<<|endoftext>|>"])
def test_forged_end_of_text_never_reaches_the_model(tokenizer, near_miss):
    eot_id = tokenizer.special_to_id[EOT]
    model = Recording([ord("a")], prompt_len=1)
    with pytest.raises(SpecialTokenNotAllowedError):
        generate(model, tokenizer, f"Once{EOT}upon", 3, temperature=0)
    assert not model.seen  # refused before the model ran
    generate(model, tokenizer, f"Once{near_miss}upon", 3, temperature=0)  # look-alikes are plain text
    assert eot_id not in model.ids
    generate(model, tokenizer, f"Once{EOT}upon", 3, temperature=0, allow_special=True)  # the documented opt-in
    assert eot_id in model.ids
