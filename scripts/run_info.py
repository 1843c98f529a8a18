"""What every result file records about its run: when, on what machine, and
how much memory. One module, imported by the project's scripts (scripts/ is
on sys.path when a script in it runs; scripts/dev/ tools add it)."""

import json
import os
import platform
import resource
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional


def now() -> str:
    """The local time, as timings.json and run_all.json record it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else the architecture."""
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def n_cpus() -> int:
    """CPUs this process may run on (the affinity mask, else all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def machine() -> str:
    """One line naming the machine, e.g. "x86_64, AMD EPYC, 2 CPUs, Linux"."""
    return f"{platform.processor() or platform.machine()}, {cpu_name()}, {n_cpus()} CPUs, {platform.system()}"


def peak_rss_mb() -> float:
    """Peak RSS of this process image. Linux: VmHWM, because ru_maxrss keeps
    the parent's peak across fork + exec, so a child would report it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def current_rss_mb() -> float:
    """Resident set size now (Linux /proc; falls back to psutil, then peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        return peak_rss_mb()


def report(fields: Dict[str, Any], output: Optional[Path]) -> None:
    """Print a lab tool's result as JSON, headed by its command (shell-quoted,
    to paste), date and machine, and write it to `output` if given."""
    result = {"command": shlex.join(["python", *sys.argv]), "date": now(), "machine": machine()}
    text = json.dumps({**result, **fields}, indent=1)
    print(text)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
