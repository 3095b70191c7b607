"""The development loop and the logs, as a newcomer's project sees them: ``offload worker
--reload`` on a project written into a temporary directory (its own settings and app),
and the log lines of real worker processes (their output file is the product here)."""

import importlib
import json
import logging
import os
import re
import signal
import time
import uuid
from pathlib import Path

import pytest
from django.tasks import TaskResultStatus

from offload import registry
from offload.logs import JSONFormatter
from tests.conftest import ROOT, wait_until

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__"), pytest.mark.process]

TASKS = '''\
import os
import time

from django.tasks import task

VERSION = {version}


@task
def stamp(ledger, sleep=0.0):
    if sleep:  # running: this process has imported this module
        with open(f"{{ledger}}.started", "w") as f:
            f.write(str(VERSION))
        time.sleep(sleep)
    with open(ledger, "a") as f:
        f.write(f"{{VERSION}} {{os.getpid()}}\\n")
    return VERSION


@task(max_attempts=2)
def boom(message):
    raise ValueError(message)
'''
#: A line in Offload's format: timestamp, level, logger, message.
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+ ")


class Project:
    """A project of its own in ``tmp_path``: ``tests.settings`` (the suite's databases)
    plus ``extra`` settings, and one app whose ``tasks`` module can be rewritten."""

    def __init__(self, tmp_path, monkeypatch, extra=""):
        self.app = f"devapp_{uuid.uuid4().hex[:8]}"  # a fresh module name for each test
        package = tmp_path / self.app
        package.mkdir()
        (package / "__init__.py").write_text("")
        self.tasks_file = package / "tasks.py"
        self.extra_file = package / "extra_settings.py"  # imported by the settings
        self.extra_file.write_text("")
        self.write(1)
        (tmp_path / f"{self.app}_settings.py").write_text(
            "from tests.settings import *\n"
            f"INSTALLED_APPS = [*INSTALLED_APPS, {self.app!r}]\n"
            f"from {self.app}.extra_settings import *\n" + extra)
        monkeypatch.syspath_prepend(str(tmp_path))
        self.tasks = importlib.import_module(f"{self.app}.tasks")
        self.ledger = tmp_path / "ledger.txt"
        self.env = {"DJANGO_SETTINGS_MODULE": f"{self.app}_settings",
                    "PYTHONPATH": f"{tmp_path}:{ROOT}"}

    def write(self, version):
        self.tasks_file.write_text(TASKS.format(version=version))

    def started(self):
        """The version of the slow ``stamp`` running now, once it runs."""
        started = Path(f"{self.ledger}.started")
        return started.exists() and started.read_text()

    def runs(self):
        """The versions of ``stamp`` that ran, in order."""
        text = self.ledger.read_text() if self.ledger.exists() else ""
        return [int(line.split()[0]) for line in text.splitlines()]

    def run(self, timeout=30, **kwargs):
        result = self.tasks.stamp.enqueue(str(self.ledger), **kwargs)
        wait_until(lambda: self.tasks.stamp.get_result(result.id).is_finished, timeout=timeout,
                   message=f"task {result.id} finished")
        return self.tasks.stamp.get_result(result.id)


def servers(state=None):
    return [s for s in registry.listing(include_gone=True) if state in (None, s.state)]


def touching(path, predicate, every=3.0):
    """``predicate`` for wait_until that touches ``path`` again every ``every`` seconds
    (a reloader that took its first look after the edit missed it)."""
    last = [time.monotonic()]

    def check():
        if time.monotonic() - last[0] > every:
            os.utime(path)
            last[0] = time.monotonic()
        return predicate()

    return check


def descendants(pid):
    found = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return found
    for child in map(int, children):
        found += [child, *descendants(child)]
    return found


def test_a_code_change_drains_the_server_and_restarts_it_with_the_new_code(
        tmp_path, monkeypatch, start_worker):
    project = Project(tmp_path, monkeypatch, "DEBUG = True\n")  # --reload by default
    worker = start_worker("--processes", "1", "--threads", "2", "--grace", "20s", env=project.env)
    worker.wait_started()
    assert "--reload (on because settings.DEBUG is True)" in worker.output
    [first] = servers("running")
    assert first.pid != worker.proc.pid  # the reloading parent serves nothing itself
    slow = project.tasks.stamp.enqueue(str(project.ledger), sleep=1.5)
    assert wait_until(project.started, message="the slow task running") == "1"

    project.write(2)
    wait_until(touching(project.tasks_file, lambda: [s.id for s in servers("running")] not in ([], [first.id])),
               timeout=60, message="a new server after the change")
    [second] = servers("running")
    assert {s.id: s.state for s in servers()} == {first.id: "stopped", second.id: "running"}
    drained = project.tasks.stamp.get_result(slow.id)  # finished by the old server, once
    assert drained.status == TaskResultStatus.SUCCESSFUL and len(drained.worker_ids) == 1
    assert project.run().return_value == 2
    assert project.runs() == [1, 2]
    assert f"{project.tasks_file} changed: stopping this server as on SIGTERM" in worker.output

    processes = descendants(worker.proc.pid)
    assert second.pid in processes
    worker.signal(signal.SIGTERM)
    assert worker.wait(40) == 0, worker.output
    assert [pid for pid in processes if Path(f"/proc/{pid}").exists()] == []
    assert {s.id: s.state for s in servers()} == {first.id: "stopped", second.id: "stopped"}


def test_sigterm_to_the_reloading_parent_drains_and_leaves_no_process(
        tmp_path, monkeypatch, start_worker):
    project = Project(tmp_path, monkeypatch)  # DEBUG is False: --reload turns it on
    worker = start_worker("--reload", "--processes", "2", "--threads", "1", "--grace", "20s",
                          env=project.env)
    worker.wait_started()
    slow = project.tasks.stamp.enqueue(str(project.ledger), sleep=1.5)
    assert wait_until(project.started, message="the slow task running") == "1"
    processes = descendants(worker.proc.pid)
    assert len(processes) >= 3, processes  # the serving child and its two workers
    worker.signal(signal.SIGTERM)
    assert worker.wait(40) == 0, worker.output
    assert project.tasks.stamp.get_result(slow.id).status == TaskResultStatus.SUCCESSFUL
    assert [pid for pid in processes if Path(f"/proc/{pid}").exists()] == []
    assert [s.state for s in servers()] == ["stopped"]


def test_noreload_keeps_the_code_it_started_with(tmp_path, monkeypatch, start_worker):
    project = Project(tmp_path, monkeypatch, "DEBUG = True\n")
    worker = start_worker("--noreload", "--processes", "1", "--threads", "1", env=project.env)
    worker.wait_started()
    assert project.run().return_value == 1
    project.write(2)
    assert project.run().return_value == 1  # the worker process keeps the module it imported
    [server] = servers()
    assert server.pid == worker.proc.pid and server.state == "running"  # no reloading parent
    assert "--reload" not in worker.output and "watching for file changes" not in worker.output
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_broken_file_waits_for_its_fix_instead_of_ending_the_loop(
        tmp_path, monkeypatch, start_worker):
    project = Project(tmp_path, monkeypatch, "DEBUG = True\n")
    worker = start_worker("--processes", "1", "--threads", "1", env=project.env)
    worker.wait_started()
    [first] = servers("running")
    project.extra_file.write_text("raise RuntimeError('a typo in the settings')\n")
    wait_until(touching(project.extra_file, lambda: servers("running") == []), timeout=60,
               message="the server stopped after the change")
    worker.wait_event("reload-waiting", timeout=60)  # the parent waits for a fix
    assert "RuntimeError: a typo in the settings" in worker.output
    assert worker.proc.poll() is None
    project.extra_file.write_text("")
    wait_until(touching(project.extra_file, lambda: servers("running")), timeout=60,
               message="a new server after the fix")
    assert project.run().return_value == 1
    worker.signal(signal.SIGTERM)
    assert worker.wait(40) == 0, worker.output


def test_reload_and_burst_are_refused_together(tmp_path, monkeypatch, start_worker):
    project = Project(tmp_path, monkeypatch)
    worker = start_worker("--reload", "--burst", env=project.env)
    assert worker.wait() == 1
    assert ("CommandError: --reload and --burst: --burst exits once the queue is empty, --reload "
            "keeps restarting the server; drop one of them.") in worker.output


# -- logs ---------------------------------------------------------------------------


def _run_past_a_failure(project, start_worker, *flags):
    """A task that succeeds and one that fails (after its retry) on a real server,
    stopped by SIGTERM once the failure is recorded: ``(ok, failed, worker)``."""
    ok = project.tasks.stamp.enqueue(str(project.ledger))
    failed = project.tasks.boom.enqueue("kaboom")
    worker = start_worker("--processes", "1", *flags, env=project.env)
    wait_until(lambda: project.tasks.boom.get_result(failed.id).status == TaskResultStatus.FAILED,
               message="the failing task failed twice")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    return ok, failed, worker


def test_without_logging_settings_offload_and_django_task_lines_share_one_format(
        tmp_path, monkeypatch, start_worker):
    project = Project(tmp_path, monkeypatch, "LOGGING = {}\n")  # a project that set nothing
    ok, failed, worker = _run_past_a_failure(project, start_worker, "--threads", "2")
    assert project.tasks.stamp.get_result(ok.id).status == TaskResultStatus.SUCCESSFUL
    lines = worker.output.splitlines()
    records = [line for line in lines if LINE.match(line)]
    loggers = {line.split()[3] for line in records}
    assert {"offload.server", "offload.worker", "django.tasks"} <= loggers, worker.output
    assert any(f"INFO django.tasks Task id={ok.id} " in line and "state=SUCCESSFUL" in line
               for line in records)
    # Each failed attempt: one record with the task's traceback right under it.
    retry = next(i for i, line in enumerate(lines)
                 if f"WARNING offload.worker Task id={failed.id} " in line and "(attempt 1 of 2)" in line)
    final = next(i for i, line in enumerate(lines)
                 if f"ERROR django.tasks Task id={failed.id} " in line and "state=FAILED" in line)
    for at in (retry, final):
        block = lines[at + 1:]
        block = block[:next((i for i, line in enumerate(block) if LINE.match(line)), len(block))]
        assert block[0] == "Traceback (most recent call last):", worker.output
        assert block[-1] == "ValueError: kaboom", worker.output
    # Every line is a record or part of one's traceback: nothing bare, nothing twice.
    assert lines[0] == records[0] and LINE.match(lines[0])
    assert len([line for line in records if f"Task id={failed.id} " in line and "state=FAILED" in line]) == 1


def test_a_project_logging_config_is_left_as_it_is(tmp_path, monkeypatch, start_worker):
    project = Project(tmp_path, monkeypatch, (
        "LOGGING = {'version': 1, 'disable_existing_loggers': False,\n"
        "           'formatters': {'mine': {'format': 'MINE %(name)s %(message)s'}},\n"
        "           'handlers': {'mine': {'class': 'logging.StreamHandler', 'formatter': 'mine'}},\n"
        "           'loggers': {'offload': {'handlers': ['mine'], 'level': 'INFO'}}}\n"))
    ok, failed, worker = _run_past_a_failure(project, start_worker)
    lines = worker.output.splitlines()
    assert any(line.startswith("MINE offload.worker ") and "taking queues" in line for line in lines)
    assert not any(LINE.match(line) and " offload." in line for line in lines)  # theirs only
    # django.tasks, which their LOGGING does not configure, gets Offload's format.
    assert any(LINE.match(line) and f"ERROR django.tasks Task id={failed.id} " in line for line in lines)


DOCS = ROOT / "docs" / "operations.md"


def documented_json_logging():
    """The JSON ``LOGGING`` example of docs/operations.md, as written there."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    [block] = [b for b in blocks if "offload.logs.JSONFormatter" in b]
    return block


def test_the_documented_json_logging_gives_one_json_object_per_line(
        tmp_path, monkeypatch, start_worker):
    project = Project(tmp_path, monkeypatch, documented_json_logging())
    ok, failed, worker = _run_past_a_failure(project, start_worker)
    records = [json.loads(line) for line in worker.output.splitlines()]  # every line is JSON
    assert {"offload.server", "offload.worker", "django.tasks"} <= {r["logger"] for r in records}
    [final] = [r for r in records if r["logger"] == "django.tasks" and r["level"] == "ERROR"]
    assert final["message"] == f"Task id={failed.id} path={project.app}.tasks.boom state=FAILED"
    assert final["exception"].startswith("Traceback (most recent call last):")
    assert final["exception"].endswith("ValueError: kaboom")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", final["time"])


@pytest.mark.django_db(transaction=False)
def test_json_formatter_fields_extras_and_exceptions():
    formatter = JSONFormatter()
    record = logging.LogRecord("shop.tasks", logging.WARNING, __file__, 1, "%s owes %d", ("ann", 5),
                               None)
    record.invoice = 17
    record.path = Path("/tmp/x")  # not JSON: written as its str()
    entry = json.loads(formatter.format(record))
    assert entry["logger"] == "shop.tasks" and entry["level"] == "WARNING"
    assert entry["message"] == "ann owes 5" and entry["invoice"] == 17 and entry["path"] == "/tmp/x"
    assert "exception" not in entry and "args" not in entry and "msg" not in entry
    try:
        raise KeyError("gone")
    except KeyError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = formatter.format(record)
    assert "\n" not in line  # one line per record, the traceback inside the object
    assert json.loads(line)["exception"].splitlines()[-1] == "KeyError: 'gone'"
