"""How good and how fast a tokenizer is on a corpus: the numbers behind `tinylm tokenizer-stats`."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass

from tinylm.tokenizer.bpe import Tokenizer
from tinylm.tokenizer.chunking import check_input_file, chunk_ranges, read_text_range

PILE_BYTES = 825e9  # the Pile, the yardstick for "how long would a real dataset take"


@dataclass
class TokenizerStats:
    documents: int
    num_bytes: int
    num_tokens: int
    seconds: float
    longest_tokens: list[tuple[int, bytes]]

    @property
    def bytes_per_token(self) -> float:
        return self.num_bytes / max(1, self.num_tokens)

    @property
    def bytes_per_second(self) -> float:
        return self.num_bytes / max(self.seconds, 1e-9)

    @property
    def pile_seconds(self) -> float:
        return PILE_BYTES / self.bytes_per_second


def sample_documents(path: str | os.PathLike, separator: str, num_docs: int, seed: int = 0, max_bytes: int = 64 << 20) -> list[str]:
    """Up to num_docs random documents from the first max_bytes of a file, without reading it all."""
    path = check_input_file(path)
    docs: list[str] = []
    read = 0
    for start, end in chunk_ranges(path, [separator] if separator else [], 4 << 20):
        text = read_text_range(path, start, end)
        docs.extend(d for d in (text.split(separator) if separator else [text]) if d.strip())
        read += end - start
        if read >= max_bytes:
            break
    rng = random.Random(seed)
    if len(docs) > num_docs:
        docs = rng.sample(docs, num_docs)
    return docs


def longest_tokens(tokenizer: Tokenizer, k: int = 10) -> list[tuple[int, bytes]]:
    specials = {t.encode("utf-8") for t in tokenizer.special_tokens}
    items = [(i, t) for i, t in tokenizer.vocab.items() if t not in specials]
    return sorted(items, key=lambda it: (-len(it[1]), it[0]))[:k]


def measure(tokenizer: Tokenizer, documents: list[str], top_k: int = 10) -> TokenizerStats:
    """Compression over the documents, and single-process encoding throughput on them."""
    num_bytes = sum(len(d.encode("utf-8")) for d in documents)
    t0 = time.perf_counter()
    num_tokens = sum(len(tokenizer.encode(d)) for d in documents)
    seconds = time.perf_counter() - t0
    return TokenizerStats(len(documents), num_bytes, num_tokens, seconds, longest_tokens(tokenizer, top_k))
