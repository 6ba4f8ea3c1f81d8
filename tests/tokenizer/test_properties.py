"""Property tests (hypothesis): round trips, streaming == whole-text encoding, and BPE training
against an obviously-correct trainer. The default run tries a few hundred examples; `-m slow`
tries 10,000."""

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinylm import Tokenizer, train_bpe

EOT = "<|endoftext|>"
DOUBLE = EOT + EOT
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

texts_with_specials = st.lists(st.one_of(st.text(), st.sampled_from([EOT, DOUBLE, "<|endoftext", "|>", " ", "\n"])), max_size=12).map("".join)


def _fix_surrogates(s: str) -> str:
    return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _roundtrip(tok: Tokenizer, text: str) -> None:
    assert tok.decode(tok.encode(text)) == _fix_surrogates(text)


def _streaming(tok: Tokenizer, text: str, cuts: list[int]) -> None:
    cuts = sorted({c % (len(text) + 1) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]
    assert list(tok.encode_iterable(pieces)) == tok.encode(text)


@FAST
@given(text=texts_with_specials)
def test_roundtrip(gpt2_tokenizer, text):
    _roundtrip(gpt2_tokenizer, text)


@FAST
@given(text=texts_with_specials, cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_streaming_equals_encode(gpt2_tokenizer, text, cuts):
    _streaming(gpt2_tokenizer, text, cuts)


@pytest.mark.slow
@SLOW
@given(text=texts_with_specials)
def test_roundtrip_10k(gpt2_tokenizer, text):
    _roundtrip(gpt2_tokenizer, text)


@pytest.mark.slow
@SLOW
@given(text=texts_with_specials, cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_streaming_equals_encode_10k(gpt2_tokenizer, text, cuts):
    _streaming(gpt2_tokenizer, text, cuts)


def test_lone_surrogate_becomes_replacement_character(gpt2_tokenizer_each_backend, tiktoken_gpt2):
    gpt2_tokenizer = gpt2_tokenizer_each_backend
    text = "a\ud800b"
    assert gpt2_tokenizer.decode(gpt2_tokenizer.encode(text)) == "a\ufffdb"
    assert gpt2_tokenizer.encode(text) == tiktoken_gpt2.encode(text)


def _slow_train(text: str, vocab_size: int, specials: list[str]) -> list[tuple[bytes, bytes]]:
    """Obviously correct BPE: split on specials, pre-tokenize, recount all pairs every step."""
    import regex

    from tinylm.tokenizer.pretokenize import GPT2_PATTERN

    pieces = regex.split("|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True)), text) if specials else [text]
    words = Counter(tuple(bytes([b]) for b in m.encode()) for p in pieces for m in regex.findall(GPT2_PATTERN, p))
    merges = []
    while 256 + len(specials) + len(merges) < vocab_size:
        pairs = Counter()
        for w, n in words.items():
            for pair in zip(w, w[1:]):
                pairs[pair] += n
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        new = Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] += n
        words = new
    return merges


corpora = st.lists(st.one_of(st.text(alphabet="ab c\n'é", max_size=12), st.just(EOT)), min_size=1, max_size=15).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=corpora, extra=st.integers(min_value=0, max_value=25))
def test_training_matches_slow_trainer(tmp_path_factory, text, extra):
    if not text:  # an empty file is an error, tested elsewhere
        return
    path = tmp_path_factory.mktemp("bpe") / "c.txt"
    path.write_text(text, encoding="utf-8")
    vocab_size = 257 + extra
    _, merges = train_bpe(path, vocab_size, [EOT], num_workers=1)
    assert merges == _slow_train(text, vocab_size, [EOT])
