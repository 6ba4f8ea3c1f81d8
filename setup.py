"""Build hook for the optional C extensions; all other metadata lives in pyproject.toml.

optional=True: without a working compiler the install still succeeds and tinylm falls back to
pure Python: the merge loop in tinylm/tokenizer/train.py (for _bpe_merge) and the encoder in
tinylm/tokenizer/bpe.py (for _bpe_encode).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("tinylm.tokenizer._bpe_merge", ["tinylm/tokenizer/_bpe_merge.c"], optional=True),
        Extension("tinylm.tokenizer._bpe_encode", ["tinylm/tokenizer/_bpe_encode.c"],
                  depends=["tinylm/tokenizer/_str_utf8.h"], optional=True),
    ],
)
