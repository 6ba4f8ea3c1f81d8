"""Peak resident memory of this process, as reports and memory tests need it.

Linux keeps `getrusage(RUSAGE_SELF).ru_maxrss` across fork and exec: a command started from a big
process (a notebook, a test runner) would report its parent's peak as its own. /proc's VmHWM is
this process's own high-water mark; ru_maxrss is the fallback elsewhere (macOS: bytes, not KB).
"""

from __future__ import annotations

import re
import resource
import sys


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (KB / 1024, as the CLI reports it)."""
    try:
        with open("/proc/self/status") as f:
            m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        if m:
            return int(m.group(1)) / 1024
    except OSError:
        pass
    return _maxrss_mb(resource.RUSAGE_SELF)


def children_peak_rss_mb() -> float:
    """The largest peak resident set size among this process's finished, waited-for children, in MB."""
    return _maxrss_mb(resource.RUSAGE_CHILDREN)


def _maxrss_mb(who: int) -> float:
    peak = resource.getrusage(who).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
