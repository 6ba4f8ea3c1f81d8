"""The bundled corpus's folder (pd_prose.txt.xz + NOTICE); its helpers live in tinylm.corpus.bundled.

Kept importable as `tinylm.data` for code written before the helpers moved.
"""

from tinylm.corpus.bundled import BUNDLED_CORPUS, DOC_SEPARATOR, extract_bundled_corpus, hold_out_every, split_documents, write_documents

__all__ = ["BUNDLED_CORPUS", "DOC_SEPARATOR", "extract_bundled_corpus", "hold_out_every", "split_documents", "write_documents"]
