"""Process memory of a benchmark run (Linux ``/proc``), standard library only.

Shared by the benchmark scripts (``_common.py``) and the runners of the original
implementations (``peers/_runner_common.py``), which run in the originals' own environments.
"""

from __future__ import annotations

import resource


def status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB; ``None`` if absent."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak() -> None:
    """Reset the high-water mark to the current memory (Linux ≥ 4.0; else a no-op)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def peak_mb() -> float:
    """Peak resident memory of this process so far, in MiB.

    Reads the kernel's high-water mark ``VmHWM`` where available: ``ru_maxrss`` survives
    ``exec`` on Linux, so a spawned worker would report its parent's peak.
    """
    peak = status_mb("VmHWM")
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
