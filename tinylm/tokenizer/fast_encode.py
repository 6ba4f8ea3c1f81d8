"""The old name of tinylm.tokenizer._native (the C helpers' loader), kept for scripts that import it.

This module *is* _native: `fast_encode.X = ...` (monkeypatching in tests) changes what _native uses.
"""

import sys

from tinylm.tokenizer import _native

sys.modules[__name__] = _native
