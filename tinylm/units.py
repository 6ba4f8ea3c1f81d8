"""Memory sizes as people write them, one parser for every command.

`80GB` is decimal (80·10⁹ bytes), `24GiB` binary (24·2³⁰); a bare letter, as in `4G` or `500M`,
is binary, as in `sort -S` and most shell tools; a bare number is bytes.
"""

from __future__ import annotations

import re

from tinylm.errors import ConfigError

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
}


def parse_memory(text: str) -> int:
    """'80GB' -> 80·10⁹, '24GiB' and '24G' -> 24·2³⁰, '512' -> 512 bytes."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ConfigError(f"cannot read a memory size from {text!r}; write e.g. 80GB, 24GiB, 4G or 512MB")
    value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise ConfigError(f"memory size must be positive, got {text!r}")
    return value
