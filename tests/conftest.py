"""Fixtures shared by the suite: real worker subprocesses against the test databases."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connections

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate, timeout=30.0, interval=0.02, message="condition"):
    """Poll ``predicate`` until it is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def max_overlap(runs):
    """Most runs that were in progress at the same instant."""
    events = sorted([(r.started, 1) for r in runs] + [(r.ended, -1) for r in runs],
                    key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def kill_a_process_mid_drain(worker, n, ran):
    """Once ``ran`` tasks have run (Run rows, the ledger outside the task table),
    SIGKILL the worker process that ran the latest one; wait until all ``n`` tasks
    succeeded, stop the server, and check that nothing was lost. Returns ``(rescued,
    twice)``: the ids taken back from the killed process, and the ids that ran twice."""
    from django.db.models import Count

    from offload.models import TaskRow
    from tests.testapp.models import Run

    wait_until(lambda: Run.objects.count() >= ran, message="tasks running")
    victim = Run.objects.order_by("-id").values_list("pid", flat=True)[0]
    assert victim in worker.children()
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: TaskRow.objects.filter(status="SUCCESSFUL").count() == n, timeout=90,
               message="all tasks successful")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert Run.objects.values("key").distinct().count() == n  # nothing lost
    rescued = set(TaskRow.objects.filter(rescues__gt=0).values_list("pk", flat=True))
    twice = {int(r["task_id"]) for r in Run.objects.values("task_id").annotate(n=Count("id"))
             if r["n"] > 1}
    return rescued, twice


def offload_checks(*ids):
    """Offload's system check messages (those with ``ids`` if given), run as ``manage.py
    check`` runs them (Django's task checks call ``OffloadBackend.check``)."""
    from django.core.checks import run_checks

    return [m for m in run_checks() if m.id and m.id.startswith("offload.")
            and (not ids or m.id in ids)]


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(**extra):
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=str(ROOT),
        OFFLOAD_DB_NAME=str(connections["default"].settings_dict["NAME"]),
        OFFLOAD_TASKS_DB_NAME=str(connections["tasks"].settings_dict["NAME"]),
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Worker:
    """A real ``manage.py offload worker`` process (the supervisor and its children)."""

    def __init__(self, tmp_path, *args, env=None, options=()):
        stamp = time.monotonic_ns()
        self.log = tmp_path / f"worker-{stamp}.log"
        #: Its test signals (offload.worker.signals): a file per moment.
        self.events = tmp_path / f"events-{stamp}"
        self.events.mkdir()
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "offload", *options, "worker", *args],
            env=worker_env(OFFLOAD_TEST_EVENTS=self.events, **(env or {})), stdout=self._out,
            stderr=subprocess.STDOUT, cwd=ROOT,
        )

    @property
    def output(self):
        return self.log.read_text()

    def seen(self, moment):
        """How many times the server reached ``moment`` (offload.worker.signals)."""
        return len(list(self.events.glob(f"{moment}.*")))

    def wait_event(self, moment, timeout=30, count=1):
        """Wait until the server reached ``moment`` ``count`` times; fail if it exits first."""
        deadline = time.monotonic() + timeout
        while self.seen(moment) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"worker never reached {moment!r} (x{count}):\n{self.output}")
            time.sleep(0.02)

    def wait_started(self, timeout=30):
        """Until a worker process's loop runs (it claims from then on)."""
        self.wait_event("loop-started", timeout)

    def children(self):
        """PIDs of the worker processes (not multiprocessing's resource tracker)."""
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except FileNotFoundError:
            return []
        pids = []
        for pid in map(int, text.split()):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"resource_tracker" not in cmdline:
                pids.append(pid)
        return pids

    def signal(self, signum):
        self.proc.send_signal(signum)

    def wait(self, timeout=60):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker did not exit within {timeout}s:\n{self.output}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                for pid in self.children():
                    os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@pytest.fixture
def start_worker(tmp_path):
    started = []

    def start(*args, env=None, options=()):
        worker = Worker(tmp_path, *args, env=env, options=options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def burst(start_worker):
    """Run ``offload worker --burst`` to completion; return its output."""

    def run(*args, timeout=90, env=None):
        worker = start_worker("--burst", *args, env=env)
        code = worker.wait(timeout)
        assert code == 0, worker.output
        return worker.output

    return run


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser(monkeypatch):
    """Debian's Chromium driven by Playwright (never a downloaded browser)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: /usr/bin/chromium is required (apt install chromium)")
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls
    # are still synchronous (Django documents this switch for exactly this case).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        yield browser
        browser.close()
        # While Playwright's sync API is open this thread has a running event loop, so
        # Django's connections (asgiref's thread-critical Local) live in context-variable
        # storage: the connection the test opened in here is not the one the test
        # teardown closes once Playwright has stopped, and it would stay open until the
        # end of the run, when PostgreSQL refuses to drop the test database.
        connections.close_all()
