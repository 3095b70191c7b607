"""Processes the fault suite starts: the servers, their process trees, RSS and open
database files. Every process is remembered with its start time, so cleanup ends only
processes this run started (a recycled PID is left alone)."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
_known = {}  # pid -> start time (clock ticks since boot), every process seen in our trees


def _starttime(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None  # a zombie: already dead
    return int(fields[19])


def alive(pid):
    return _starttime(pid) is not None


def children(pid):
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def tree(pid):
    """``pid`` and its descendants (alive), remembered for cleanup."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        start = _starttime(p)
        if start is None:
            continue
        _known.setdefault(p, start)
        out.append(p)
        todo += children(p)
    return out


def is_worker(pid):
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"resource_tracker" not in cmdline


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def open_files(pids, path):
    """How many descriptors of ``pids`` point at ``path`` (SQLite: one per connection)."""
    path = str(Path(path).resolve())
    n = 0
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == path:
                    n += 1
            except OSError:
                pass
    return n


def kill(pid, sig=signal.SIGKILL):
    """Signal ``pid`` only if it is the very process this run saw (same start time)."""
    start = _known.get(pid)
    if start is None or _starttime(pid) != start:
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


class Server:
    """``python -m django offload <args>`` with its output in ``log``."""

    def __init__(self, args, env, log):
        self.args = list(args)
        self.log = Path(log)
        self._out = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "django", "offload", *self.args],
                                     env=env, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.pid = self.proc.pid
        _known[self.pid] = _starttime(self.pid)
        self.name = f"{socket.gethostname()}-{self.pid}"  # its registry id

    def tree(self):
        return tree(self.pid) if self.proc.poll() is None else []

    def workers(self):
        """The worker processes (not multiprocessing's resource tracker), remembered."""
        if self.proc.poll() is not None:
            return []
        tree(self.pid)
        return [p for p in children(self.pid) if is_worker(p) and p in _known]

    def running(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout):
        """Exit code, or None if still running at the deadline."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=40):
        """SIGTERM, then SIGKILL for the whole tree at the deadline; the exit code."""
        if self.proc.poll() is None:
            pids = self.tree()
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                for pid in pids + self.tree():
                    kill(pid)
                self.proc.wait()
        self._out.close()
        return self.proc.returncode


def kill_leftovers():
    """SIGKILL every process this run started or saw in its trees that is still alive."""
    left = [pid for pid in list(_known) if alive(pid) and _starttime(pid) == _known[pid]]
    for pid in left:
        kill(pid)
    return left
