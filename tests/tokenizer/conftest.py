import json
from pathlib import Path

import pytest

from tinylm import Tokenizer
from tinylm.tokenizer.files import unicode_to_bytes
from tinylm.tokenizer.pretokenize import GPT2_PATTERN

FIXTURES = Path(__file__).parent.parent / "fixtures"
EOT = "<|endoftext|>"


@pytest.fixture(scope="session")
def gpt2_tokenizer() -> Tokenizer:
    return Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT])


def tiktoken_from_files(specials: dict[str, int] | None = None):
    """tiktoken's GPT-2 Encoding built from the fixture files (it cannot be downloaded here)."""
    tiktoken = pytest.importorskip("tiktoken")
    u2b = unicode_to_bytes()
    vocab = json.loads((FIXTURES / "gpt2_vocab.json").read_text())
    ranks = {bytes(u2b[c] for c in tok): i for tok, i in vocab.items() if tok != EOT}
    return tiktoken.Encoding("gpt2-fixture", pat_str=GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=specials or {EOT: 50256})


@pytest.fixture(scope="session")
def tiktoken_factory():
    return tiktoken_from_files


@pytest.fixture(scope="session")
def tiktoken_gpt2():
    return tiktoken_from_files()


def _backend_params():
    from tinylm.tokenizer._native import c_backend_available

    skip_c = pytest.mark.skipif(not c_backend_available(), reason="C extension tinylm.tokenizer._bpe_encode is not built")
    return [pytest.param("python"), pytest.param("c", marks=skip_c)]


@pytest.fixture(scope="session", params=_backend_params())
def gpt2_tokenizer_each_backend(request) -> Tokenizer:
    """GPT-2's tokenizer once per encoder backend (pure Python, and C when built)."""
    return Tokenizer.from_files(FIXTURES / "gpt2_vocab.json", FIXTURES / "gpt2_merges.txt", [EOT], backend=request.param)
