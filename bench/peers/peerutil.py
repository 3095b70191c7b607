"""Helpers shared by the peer benchmarks (stdlib only; each runs in its own venv)."""

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import threading
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


def children_cpu_seconds():
    """user+system CPU seconds of this process's exited and waited-for children (and of
    their waited-for children): read it before spawning the workers and after they exit."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _proc_stat(pid):
    """(start time, user+system ticks) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[19]), int(fields[11]) + int(fields[12])


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


class PostgresCPU:
    """CPU seconds used by the PostgreSQL backends that serve one database.

    The backends are the postmaster's children whose process title names the database
    (``postgres: [cluster: ]USER DBNAME HOST(PORT) STATE``; autovacuum workers on it
    count too); the postmaster is found in /proc (so the server must run on this
    machine). Server-wide processes (WAL writer, checkpointer, background writer) are not
    counted. Only backends that start after ``start()`` count: start it right before
    spawning the workers, so that the harness's own connections (already open) are left
    out. A backend's counters vanish when it exits, so a thread samples them every
    ``interval`` seconds and keeps the last reading (a backend that exits loses at most
    its last interval). ``stop()`` returns the seconds used since ``start()``, or None
    when no postmaster is visible in /proc.
    """

    def __init__(self, dbname, interval=0.05):
        self.tag = f" {dbname} "
        self.interval = interval
        self.postmasters = [int(p) for p in os.listdir("/proc") if p.isdigit()
                            and _comm(int(p)) == "postgres" and _comm(_ppid(int(p))) != "postgres"]
        self.match = {}  # (pid, start time) -> counts
        self.last = {}  # (pid, start time) -> ticks
        self._stop = threading.Event()

    def _sample(self, initial=False):
        for pm in self.postmasters:
            try:
                with open(f"/proc/{pm}/task/{pm}/children") as f:
                    pids = [int(c) for c in f.read().split()]
            except OSError:
                continue
            for pid in pids:
                stat = _proc_stat(pid)
                if stat is None:
                    continue
                key = (pid, stat[0])
                if key not in self.match:  # a new backend's counters start at 0
                    title = _cmdline(pid) + " "
                    if not initial and not title.startswith("postgres: "):
                        continue  # just forked: its title does not name the database yet
                    self.match[key] = not initial and self.tag in title
                if self.match[key]:
                    self.last[key] = stat[1]

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self):
        self._sample(initial=True)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=5)
        self._sample()
        if not self.postmasters:
            return None
        return sum(self.last.values()) / os.sysconf("SC_CLK_TCK")


class RedisCPU:
    """CPU seconds used by the redis-server listening on ``port`` (found in /proc),
    between ``start()`` and ``stop()``; None when it is not visible. It counts every
    client of that server, not only this benchmark's."""

    def __init__(self, port=6379):
        self.pids = [int(p) for p in os.listdir("/proc") if p.isdigit()
                     and _comm(int(p)).startswith("redis-server") and f":{port}" in _cmdline(int(p))]

    def _ticks(self):
        return sum((_proc_stat(pid) or (0, 0))[1] for pid in self.pids)

    def start(self):
        self.t0 = self._ticks()
        return self

    def stop(self):
        if not self.pids:
            return None
        return (self._ticks() - self.t0) / os.sysconf("SC_CLK_TCK")


def cpu_fields(tasks, worker_cpu_s, db_cpu_s, db_server=True):
    """The drain row's CPU fields. ``cpu_us_per_task`` = (worker + database server) CPU
    per task; left out when the server's CPU is unknown (``db_server`` False: the
    database runs inside the workers, as SQLite does)."""
    out = {"worker_cpu_s": round(worker_cpu_s, 3)}
    if db_server:
        if db_cpu_s is None:
            return out
        out["db_cpu_s"] = round(db_cpu_s, 3)
    out["cpu_us_per_task"] = round(1e6 * (worker_cpu_s + (db_cpu_s or 0.0)) / tasks, 1)
    return out


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
