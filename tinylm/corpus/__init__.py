"""Corpora in: the bundled corpus, and readers for corpora of shards (.txt, JSON Lines, Parquet,
compressed with gzip, bzip2, xz or zstandard; a file, a folder or a glob).

Records are documents. A corpus's text is what converting it to one `.txt` file gives: every
shard's documents in order (a `.txt` shard's text is taken as it is), joined by the separator
`<|endoftext|>`. Counting and encoding read it in parts, in parallel, never a whole shard in
memory; the results equal those on that `.txt` file (tokenizer.chunking.corpus_units).

pyarrow (Parquet) and zstandard (.zst) are optional: `pip install 'tinylm[corpus]'`.
"""

from tinylm.corpus.bundled import BUNDLED_CORPUS, DOC_SEPARATOR, extract_bundled_corpus, hold_out_every, split_documents, write_documents
from tinylm.corpus.readers import Part, ReadOptions, ReadStats, corpus_documents, corpus_text, part_text, plan_parts
from tinylm.corpus.shards import Shard, is_single_plain_text, resolve_shards, shard_format

__all__ = [
    "BUNDLED_CORPUS", "DOC_SEPARATOR", "extract_bundled_corpus", "hold_out_every", "split_documents", "write_documents",
    "Part", "ReadOptions", "ReadStats", "corpus_documents", "corpus_text", "part_text", "plan_parts",
    "Shard", "is_single_plain_text", "resolve_shards", "shard_format",
]
