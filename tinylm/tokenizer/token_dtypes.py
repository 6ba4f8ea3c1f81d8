"""Which integer type holds token ids: the one rule for token arrays, files and configs.

uint16 holds every id of a vocabulary of up to 65,536 tokens (ids 0..65,535) at half the size of
uint32, which holds any larger one. Token files (`tinylm encode`, .npy or raw .bin) use one of these two.
"""

from __future__ import annotations

import numpy as np

TOKEN_DTYPES: dict[str, type] = {"uint16": np.uint16, "uint32": np.uint32}
UINT16_VOCAB_LIMIT = 1 << 16  # the largest vocabulary whose ids all fit in uint16


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id of a `vocab_size`-token vocabulary fits in it, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= UINT16_VOCAB_LIMIT else np.dtype(np.uint32)
