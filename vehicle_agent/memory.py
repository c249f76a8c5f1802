"""The agent's memory budget: admit a new model only when it fits beside the served ones.

The budget is the memory limit of the agent's cgroup (v2 ``memory.max`` or v1
``memory.limit_in_bytes``; systemd's ``MemoryMax=``), or ``--memory-budget``. Of it,
the agent's resident memory may use ``share`` (the rest is for page cache — the
kernel charges the slot files' pages to the same cgroup — and short spikes).

A new version is loaded and self-tested *beside* the served one, so a swap drops no
request. Before that load the runtime asks ``admit(need)``, where ``need`` is the
memory the served version of that model measurably took (or a multiple of the file
size for a first install). If it does not fit, the runtime first gives up the
previous versions kept in memory for a fast rollback (a rollback then reloads from
its slot, as after a restart): models are swapped one at a time. If it still does not
fit, the update fails with the figures and the served models keep serving; the next
check-in tries again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MB = 1 << 20
COST_PER_FILE_BYTE = 8  # session + weights + one inference's activations, per byte of ONNX file (measured, arena off)
UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a huge number


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD = 128 << 10  # glibc's own starting value, held fixed


@functools.cache  # one dlopen per process, not one per admission
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  # glibc only (musl has neither)
        return libc
    except (OSError, AttributeError):
        return None


def tune_malloc() -> bool:
    """Hand large blocks back to the kernel as soon as they are freed (glibc; process-wide).

    glibc raises its mmap threshold to the size of each large block freed, up to 32 MB,
    so after the first inferences a session's activation buffers (up to tens of MB each:
    ONNX Runtime runs without its arena here) come from the heap, whose freed pages stay
    resident and fragmented; loading and self-testing a new version beside the served
    ones then stacks on top of that. A fixed threshold keeps every block of 128 KB or more
    in its own mapping, returned when freed (SqueezeDet served + a new session and its
    self-test beside it: about 35 MB less peak, same latency within noise). Called once
    by ``ota agent run``; True when it took effect."""
    libc = _libc()
    return bool(libc and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def release_free_memory() -> None:
    """Collect dropped sessions now and give the allocator's free pages back (glibc)."""
    gc.collect()
    libc = _libc()
    if libc:
        libc.malloc_trim(0)


def process_rss() -> int:
    """Resident bytes of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cgroup_memory_limit(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """The memory limit of this process's cgroup (v2 or v1), or None when there is none."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        candidates = (
            [root / "memory" / rel / "memory.limit_in_bytes"]
            if "memory" in controllers.split(",")
            else [root / rel / "memory.max", root / "unified" / rel / "memory.max"]
            if controllers == ""
            else []
        )
        for f in candidates:
            try:
                text = f.read_text().strip()
            except OSError:
                continue
            if text != "max" and int(text) < UNLIMITED:
                return int(text)
    return None


@dataclass
class MemoryBudget:
    limit: int | None  # bytes; None: no limit known, everything is admitted
    share: float = 0.8
    rss: Callable[[], int] = field(default=process_rss, repr=False)

    @classmethod
    def detect(cls, override_mb: float | None = None) -> MemoryBudget:
        limit = int(override_mb * MB) if override_mb else cgroup_memory_limit()
        if limit:
            log.info(
                "memory budget: %.0f MB (%s)",
                limit / MB,
                "--memory-budget" if override_mb else "cgroup limit",
            )
        return cls(limit)

    def free(self) -> int | None:
        """Bytes the agent may still take, or None without a limit."""
        if self.limit is None:
            return None
        release_free_memory()  # sessions dropped a moment ago are freed now, not later
        return int(self.limit * self.share) - self.rss()

    def refusal(self, need: int, what: str) -> str:
        """Empty when ``need`` bytes fit, else the one-line reason they do not."""
        free = self.free()
        if free is None or self.limit is None or need <= free:
            return ""  # (free is None exactly when no limit is known)
        return (
            f"not enough memory to load {what} beside the served models: it needs about {need / MB:.0f} MB, "
            f"{max(free, 0) / MB:.0f} MB of the agent's {self.limit / MB:.0f} MB budget is left "
            f"({self.share:.0%} of it for resident memory); the served models keep serving, the next check-in "
            f"tries again (raise MemoryMax= / --memory-budget, or serve fewer models)"
        )


def estimated_cost(file_length: int, measured: int = 0) -> int:
    """Memory a session of a model will take: what its predecessor took, at least the rule of thumb."""
    return max(measured, COST_PER_FILE_BYTE * file_length)
