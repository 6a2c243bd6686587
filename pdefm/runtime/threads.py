"""Thread defaults for the command-line tools: never more busy threads than cores.

Torch starts one intra-op thread per core in every process. Two processes on two cores (two ranks of
`accelerate launch`, a test run beside a training run, the main job beside anything) then hold four spinning
threads on two cores, and small tensors (16-64 point grids, the `tiny` preset) spend their time waiting for each
other: generation measured more than 12x slower that way. So each command sets, at start:

- training, evaluation and prediction: available cores / processes on this machine (`LOCAL_WORLD_SIZE`, which
  `accelerate launch` and `torchrun` set), and no more than the cores idle when the command starts (measured from
  `/proc/stat` over a quarter of a second), at least 1;
- data generation: 1 thread per process (its solvers work on grids too small to share among threads).

An explicit choice always wins: `OMP_NUM_THREADS` in the environment leaves torch's own setting alone,
`PDEFM_NUM_THREADS=N` sets N, and `PDEFM_NUM_THREADS=torch` keeps torch's default. Library functions never change
threads; only the commands' `main()` call `configure_threads`. The training commands also have the choice re-made
every minute during the run (`refresh_threads`): the cores idle at start are one instant's reading.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "PDEFM_NUM_THREADS"
MAX_THREADS = 1024  # far above any machine's cores: a typo such as 10000000 would make torch spawn that many
WORKLOADS = ("train", "generate")


def _cpu_set() -> set[int]:
    """The cores this process may run on: its affinity mask, so a container's or `taskset`'s limit counts."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def available_cores() -> int:
    """How many cores this process may run on (`_cpu_set`)."""
    return max(1, len(_cpu_set()))


def local_processes() -> int:
    """Processes of this job on this machine, as the launcher says (1 when run directly)."""
    value = os.environ.get("LOCAL_WORLD_SIZE", "")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def _cpu_times(cpus: set[int]) -> tuple[float, float] | None:
    """(idle, total) jiffies summed over `cpus`, from /proc/stat; None where it cannot be read (not Linux)."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    idle = total = 0.0
    for line in lines:
        name, *values = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        numbers = [float(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
        idle += numbers[3] + numbers[4]
        total += sum(numbers)
    return (idle, total) if total else None


def idle_cores(interval: float = 0.25) -> float | None:
    """How many of this process's cores were idle over the next `interval` seconds (None if unknown)."""
    cpus = _cpu_set()
    before = _cpu_times(cpus)
    time.sleep(interval)
    after = _cpu_times(cpus)
    if before is None or after is None or after[1] <= before[1]:
        return None
    return len(cpus) * (after[0] - before[0]) / (after[1] - before[1])


def default_threads(workload: str = "train", idle: float | None = None) -> int:
    """The package's choice: 1 for generation; for training the cores per local process, capped by the cores that
    are `idle` (a busy neighbour's cores are not ours to spin on)."""
    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {WORKLOADS}, got {workload!r}")
    if workload == "generate":
        return 1
    share = max(1, available_cores() // local_processes())
    if idle is not None:
        share = min(share, max(1, int(idle + 0.5)))
    return share


def chosen_threads(workload: str = "train") -> int | None:
    """The intra-op thread count the package would set, or None where the user's choice (or torch's) stands."""
    choice = os.environ.get(ENV, "").strip().lower()
    if choice == "torch":
        return None
    if choice:
        if not choice.isdigit() or not 1 <= int(choice) <= MAX_THREADS:
            raise ValueError(f"{ENV} must be a whole number from 1 to {MAX_THREADS} or 'torch', got {os.environ[ENV]!r}")
        return int(choice)
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return default_threads(workload, idle_cores() if workload == "train" else None)


def configure_threads(workload: str = "train", keep_current: bool = False) -> int:
    """Apply `chosen_threads(workload)` to torch; returns the intra-op thread count in effect. With `keep_current`
    (training commands), the package's choice is also re-made during the run (`refresh_threads`)."""
    import torch

    global _keeper
    threads = chosen_threads(workload)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    package_choice = threads is not None and not os.environ.get(ENV, "").strip()
    _keeper = _ThreadKeeper() if keep_current and workload == "train" and package_choice else None
    return torch.get_num_threads()


def cores_free_for_us(n_cpus: int, idle_fraction: float, own_cores: float) -> float:
    """Cores this process could use: those idle plus those it kept busy itself (`own_cores`, its CPU seconds per
    second), out of `n_cpus` of which `idle_fraction` was idle over the same interval."""
    return max(0.0, min(float(n_cpus), n_cpus * idle_fraction + own_cores))


class _ThreadKeeper:
    """Re-makes the training choice every `every` seconds from what the machine did meanwhile. The choice at start
    sees one instant: a neighbour busy then (a short generation, a test file) would hold a whole run to fewer
    threads, and one that starts later would be oversubscribed. No sleeping: it compares two samples of
    `/proc/stat` and of this process's CPU time taken `every` seconds apart."""

    def __init__(self, every: float = 60.0):
        self.every = every
        self.cpus = _cpu_set()
        self.mark = self._sample()

    def _sample(self) -> tuple[float, tuple[float, float] | None, float]:
        return time.monotonic(), _cpu_times(self.cpus), time.process_time()

    def update(self) -> int | None:
        """The thread count set now, or None when it was not time to look (or nothing could be measured)."""
        now = time.monotonic()
        if now - self.mark[0] < self.every:
            return None
        sample = self._sample()
        (t0, cpu0, own0), (t1, cpu1, own1) = self.mark, sample
        self.mark = sample
        if cpu0 is None or cpu1 is None or cpu1[1] <= cpu0[1] or t1 <= t0:
            return None
        free = cores_free_for_us(len(self.cpus), (cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1]), (own1 - own0) / (t1 - t0))
        import torch

        threads = default_threads("train", free)
        if threads != torch.get_num_threads():
            print(f"threads: {torch.get_num_threads()} -> {threads} ({free:.1f} of {len(self.cpus)} cores free for this "
                  f"run over the last {t1 - t0:.0f} s)", file=sys.stderr)
            torch.set_num_threads(threads)
        return threads


_keeper: _ThreadKeeper | None = None


def refresh_threads() -> int | None:
    """Called by the training loop at every step: re-makes the package's thread choice when a training command
    asked for it (`configure_threads(..., keep_current=True)`), else does nothing (library use never changes
    threads)."""
    return _keeper.update() if _keeper is not None else None
