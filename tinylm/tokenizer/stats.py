"""How good and how fast a tokenizer is on a corpus: the numbers behind `tinylm tokenizer-stats`."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass

from tinylm.tokenizer.bpe import Tokenizer

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


def sample_documents(path: str | os.PathLike, separator: str, num_docs: int, seed: int = 0, max_bytes: int = 64 << 20,
                     read_options=None, read_stats=None) -> list[str]:
    """Up to num_docs random non-blank documents from the first max_bytes (UTF-8) of a corpus, read as a stream.

    path: a text file or any corpus tinylm.corpus reads (its records joined by the separator, as a
    conversion to .txt gives them); documents are that text split on `separator` ("": the text is
    one document), so a text file and its JSON Lines twin give the same sample. read_options: a
    tinylm.corpus.ReadOptions; read_stats: a ReadStats that receives the records skipped.
    """
    from tinylm.corpus import ReadOptions, ReadStats, corpus_documents, corpus_text, resolve_shards

    options, read = read_options or ReadOptions(), read_stats if read_stats is not None else ReadStats()
    shards = resolve_shards(path)
    if not separator:
        return [_text_prefix(corpus_text(shards, options, read), max_bytes)]
    docs: list[str] = []
    size, separator_bytes = 0, len(separator.encode("utf-8"))
    for doc in corpus_documents(shards, options, read, separator):
        if doc.strip():
            docs.append(doc)
        size += len(doc.encode("utf-8", "surrogatepass")) + separator_bytes
        if size >= max_bytes:
            break
    rng = random.Random(seed)
    if len(docs) > num_docs:
        docs = rng.sample(docs, num_docs)
    return docs


def _text_prefix(blocks, max_bytes: int) -> str:
    """The blocks joined, stopping after the one that reaches max_bytes (UTF-8)."""
    text, size = [], 0
    for block in blocks:
        text.append(block)
        size += len(block.encode("utf-8", "surrogatepass"))
        if size >= max_bytes:
            break
    return "".join(text)


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
