"""How many conversions run at once on this machine: as many as it has
cores, while their peak memory fits in the memory that is free. A
conversion's peak is measured (the kernel's count for its process tree, or a
container's), not guessed: the first model of a family runs before the
others of that family start, and what it took is what the pool counts for
each of them (the largest seen, should a later one take more). Until a
family has been measured, its models are counted at UNMEASURED_MB."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# What a conversion is counted at before its family is measured: TensorFlow's
# stages of a small model take 0.5-1 GB (tests/test_batch_*.py's models:
# 325-900 MB per stage); a large model's family is learnt from its first model.
UNMEASURED_MB = 2048.0
# Memory left to everything else (the batch itself, the page cache, the user's programs).
HEADROOM = 0.9


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def free_memory_mb() -> float:
    """MemAvailable, or what this process's memory cgroup still allows when that is less."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    limits = []
    for limit_file, used_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),  # v1
    ):
        limit, used = _read_int(limit_file), _read_int(used_file)
        if limit is not None and used is not None and limit < 1 << 60:
            limits.append((limit - used) / 2**20)
    candidates = [v for v in [available, *limits] if v is not None]
    return max(min(candidates), 0.0) if candidates else UNMEASURED_MB * usable_cores()


@dataclass
class Sizing:
    slots: int  # conversions at once at most (cores, or --jobs)
    budget_mb: float  # the memory they may take together
    peaks: dict = field(default_factory=dict)  # family -> the largest peak measured (MB)

    @classmethod
    def measure(cls, jobs: int | None = None) -> Sizing:
        return cls(jobs or usable_cores(), round(free_memory_mb() * HEADROOM))

    def estimate(self, family: str) -> float:
        return self.peaks.get(family, UNMEASURED_MB)

    def may_start(self, family: str, running: list) -> bool:
        """Whether a model of `family` may start next to the running ones
        (Outcomes). One always may when nothing runs: a model larger than
        the budget still gets its turn, alone."""
        if not running:
            return True
        if len(running) >= self.slots:
            return False
        if family not in self.peaks and any(r.family == family for r in running):
            return False  # the first of its family is still being measured
        taken = sum(self.estimate(r.family) for r in running)
        return taken + self.estimate(family) <= self.budget_mb

    def learn(self, family: str, peak_mb: float | None, cached: bool = False) -> None:
        """What a finished model of the family took; a model whose steps all
        came from the cache ran no stage and says nothing about the family."""
        if peak_mb and not cached:
            self.peaks[family] = max(self.peaks.get(family, 0.0), float(peak_mb))

    def to_dict(self) -> dict:
        return {
            "slots": self.slots,
            "budget_mb": self.budget_mb,
            "unmeasured_mb": UNMEASURED_MB,
            "family_peaks_mb": dict(self.peaks),
        }
