"""Tasks of the fault suite. Each appends one line to the verification ledger when its
body completes: ``<task id> <attempt> <run>\\n``, where ``run`` (``pid.n``) names this
run and is also the task's return value, so the harness can tell which run's outcome
the task row recorded.

The ledger is outside the task database: one append-only file per process in
``FAULTS_LEDGER``, opened with O_APPEND and written with a single ``os.write`` per line
(atomic for a line this short), so a SIGKILL loses no completed line and tears none.
"""

import itertools
import os
import threading
import time
from pathlib import Path

from django.tasks import task

_lock = threading.Lock()
_fd = None
_fd_pid = None
_seq = itertools.count(1)


def _ledger():
    global _fd, _fd_pid
    if _fd_pid != os.getpid():
        with _lock:
            if _fd_pid != os.getpid():
                path = Path(os.environ["FAULTS_LEDGER"]) / f"{os.getpid()}.log"
                _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                _fd_pid = os.getpid()
    return _fd


def _append(context):
    run = f"{os.getpid()}.{next(_seq)}"
    os.write(_ledger(), f"{context.task_result.id} {context.attempt} {run}\n".encode())
    return run


@task(takes_context=True)
def record(context, sleep=0.0):
    """The suite's workload: optionally sleep, then write the ledger line."""
    if sleep:
        time.sleep(sleep)
    return _append(context)


@task(takes_context=True)
def gather(context, n, timeout=20.0):
    """Wait until ``n`` gather tasks run at the same time (a barrier through files in the
    ledger directory): proves ``n`` task slots are free. Raises if they never meet."""
    here = Path(os.environ["FAULTS_LEDGER"]) / "gather"
    here.mkdir(exist_ok=True)
    (here / str(context.task_result.id)).touch()
    deadline = time.monotonic() + timeout
    while len(list(here.iterdir())) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(list(here.iterdir()))} of {n} gather tasks ran at once")
        time.sleep(0.05)
    return _append(context)


@task(takes_context=True)
def count(context, sleep=0.0):
    """Adds 1 to the counter row (faults_counter, made by the atomic scenarios), then
    sleeps (a window for a kill after the write) and writes the ledger line: the counter
    counts effects, the ledger runs. Enqueued with ``.using(atomic=True)`` or not."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("UPDATE faults_counter SET value = value + 1 WHERE name = 'c'")
    if sleep:
        time.sleep(sleep)
    return _append(context)


@task(takes_context=True)
def tally(context, values):
    """A chord's callback: writes its ledger line and returns how many values it got
    (the harness reads the count back; a lost or doubled fan-in shows in the ledger)."""
    _append(context)
    return len(values)


@task(takes_context=True)
def passes(context, value=0):
    """A chain's or a diamond's step: writes its ledger line and returns ``value + 1``
    (what it received, plus one: the harness reads the results passed along)."""
    _append(context)
    return value + 1
