"""Build hook for the optional C merge loop; all other metadata lives in pyproject.toml.

optional=True: without a working compiler the install still succeeds and tinylm falls back to
the pure-Python merge loop in tinylm/tokenizer/train.py.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("tinylm.tokenizer._bpe_merge", ["tinylm/tokenizer/_bpe_merge.c"], optional=True),
    ],
)
