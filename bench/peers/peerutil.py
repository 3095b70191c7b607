"""Helpers shared by the peer benchmarks (stdlib only; each runs in its own venv)."""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time


def emit(obj):
    """One JSON object per measurement on stdout."""
    print(json.dumps(obj), flush=True)


def die_with_parent():
    """preexec_fn: have Linux SIGTERM the child if the benchmark process dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def descendants(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                for child in map(int, f.read().split()):
                    out += [child, *descendants(child)]
    except OSError:
        pass
    return out


def cpu_seconds(pids):
    """user+system CPU seconds used so far by the given processes."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


class HostCPU:
    """Whole-machine CPU busy % between start() and busy_pct() (from /proc/stat).

    Reported with each result so that a run disturbed by other load on this
    2-core machine is visible.
    """

    @staticmethod
    def _read():
        with open("/proc/stat") as f:
            vals = list(map(int, f.readline().split()[1:]))
        idle = vals[3] + vals[4]
        return sum(vals) - idle, sum(vals)

    def start(self):
        self.b0, self.t0 = self._read()
        return self

    def busy_pct(self):
        b, t = self._read()
        return round(100.0 * (b - self.b0) / max(1, t - self.t0), 1)


def wait_for_quiet(log, max_busy=25.0, max_wait=120.0):
    """Wait (bounded) until the machine is mostly idle before measuring."""
    deadline = time.monotonic() + max_wait
    while True:
        probe = HostCPU().start()
        time.sleep(1.0)
        busy = probe.busy_pct()
        if busy <= max_busy:
            return busy
        if time.monotonic() > deadline:
            log(f"machine still {busy}% busy after {max_wait:.0f}s; measuring anyway")
            return busy
        log(f"machine {busy}% busy; waiting for it to quiet down")


def percentiles(samples_ms, ps=(50, 95)):
    lat = sorted(samples_ms)
    if not lat:
        return {"samples": 0, **{f"p{p}_ms": None for p in ps}, "max_ms": None, "mean_ms": None}

    def pct(p):
        return round(lat[min(len(lat) - 1, int(p / 100.0 * len(lat)))], 2)

    return {"samples": len(lat), **{f"p{p}_ms": pct(p) for p in ps},
            "max_ms": round(lat[-1], 2), "mean_ms": round(sum(lat) / len(lat), 2)}


def stderr_logger(prefix):
    def log(msg):
        print(f"[{prefix}] {msg}", file=sys.stderr, flush=True)
    return log


def run_per_db(script, argv, deadline, log):
    """Run ``script`` once per database in a fresh child (Django settings are per
    process), stopping a child that outlives ``deadline`` seconds; return the first
    non-zero exit status."""
    rc = 0
    for db in ("sqlite", "postgres"):
        child = subprocess.Popen([sys.executable, os.path.abspath(script), *argv, "--db", db])
        try:
            child.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            log(f"{db} run exceeded its deadline; stopping pid {child.pid}")
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        rc = rc or child.returncode
    return rc
