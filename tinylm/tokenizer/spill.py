"""Pre-token counts under a memory budget: spill sorted partial counts to disk, merge at the end.

When the table of distinct pre-tokens outgrows the budget, it is written out as a sorted run and
cleared. At the end the runs are merged (a k-way merge, one record per run in memory), summing
the counts of equal pre-tokens. The result is identical to counting in memory.
"""

from __future__ import annotations

import heapq
import os
import struct
import tempfile
from collections import Counter
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from tinylm.errors import OutputError

# A dict entry holding a short bytes key and an int costs about this much beyond the key's bytes.
ENTRY_OVERHEAD_BYTES = 115
_RECORD = struct.Struct("<IQ")  # key length, count


class SpillingCounter:
    """A Counter of pre-tokens (UTF-8 bytes) that spills to sorted run files when it would pass `budget_bytes`."""

    def __init__(self, budget_bytes: int | None, spill_dir: str | os.PathLike | None = None):
        self.budget = budget_bytes
        self.counts: Counter[bytes] = Counter()
        self._chars = 0  # bytes of all keys held, for the memory estimate
        self._dir = spill_dir
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.runs: list[Path] = []

    def estimated_bytes(self) -> int:
        return len(self.counts) * ENTRY_OVERHEAD_BYTES + self._chars

    def update(self, counts: dict[bytes, int]) -> None:
        before = len(self.counts)
        self.counts.update(counts)
        if self.budget is None:
            return
        # Estimate the new keys' size from the batch's average key length (cheap, close enough).
        added = len(self.counts) - before
        if added and counts:
            sample = min(len(counts), 4096)
            avg = sum(map(len, islice(counts, sample))) / sample
            self._chars += int(added * avg)
        if self.estimated_bytes() > self.budget:
            self.spill()

    def spill(self) -> None:
        if not self.counts:
            return
        if self._tmp is None:
            try:
                self._tmp = tempfile.TemporaryDirectory(prefix="tinylm-spill-", dir=self._dir)
            except OSError as exc:
                raise OutputError(f"cannot create a spill folder in {self._dir or tempfile.gettempdir()}: {exc.strerror}") from None
        path = Path(self._tmp.name) / f"run-{len(self.runs):05d}.bin"
        try:
            with open(path, "wb", buffering=1 << 20) as f:
                for key, count in sorted(self.counts.items()):
                    f.write(_RECORD.pack(len(key), count))
                    f.write(key)
        except OSError as exc:
            raise OutputError(f"cannot write spill file {path}: {exc.strerror or exc}") from None
        self.runs.append(path)
        self.counts = Counter()
        self._chars = 0

    @staticmethod
    def _read_run(path: Path) -> Iterator[tuple[bytes, int]]:
        with open(path, "rb", buffering=1 << 20) as f:
            while header := f.read(_RECORD.size):
                n, count = _RECORD.unpack(header)
                yield f.read(n), count

    def items_bytes(self) -> Iterator[tuple[bytes, int]]:
        """All (pre-token as UTF-8 bytes, count) pairs, once; merged from disk when anything spilled.

        In memory, each pair leaves the table as it is read, so the keys' memory is freed while the
        caller builds its own copy (the table itself is emptied).
        """
        if not self.runs:
            counts, self.counts, self._chars = self.counts, Counter(), 0
            while counts:
                yield counts.popitem()
            return
        self.spill()
        try:
            current, total = None, 0
            for key, count in heapq.merge(*(self._read_run(p) for p in self.runs)):
                if key == current:
                    total += count
                else:
                    if current is not None:
                        yield current, total
                    current, total = key, count
            if current is not None:
                yield current, total
        finally:
            self.close()

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
