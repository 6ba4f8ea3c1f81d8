"""Progress bars: tqdm without its monitor thread.

tqdm starts a background "monitor" thread with its first bar (even a disabled one) and keeps it
for the life of the process. A process with a second thread cannot safely fork worker pools
(tokenizer.chunking.pool_context then falls back to the slower forkserver, which also needs the
`if __name__ == "__main__":` guard in scripts). The monitor only retunes `miniters` for bars
that update rarely; tinylm's bars do without it.
"""

from __future__ import annotations

from tqdm import tqdm


class progress_bar(tqdm):  # noqa: N801 - used like the tqdm function it replaces
    """tqdm(...) with monitor_interval = 0: no monitor thread, same bar."""

    monitor_interval = 0
