"""A release rollover with real processes: release A (web + async) serves requests and
runs a stream of tasks; release B starts; `offload retire --keep-release B`; A stops
claiming at once, finishes what it runs and exits; nothing is lost or run twice and
every web request succeeds."""

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.db.models import Count

from offload.models import Server, TaskRow
from tests.conftest import ROOT, free_port, wait_until, worker_env
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process]


class Release:
    """`offload run` for the web role and for the async role of one release."""

    def __init__(self, name, tmp_path):
        self.name = name
        self.port = free_port()
        self.logs = {}
        self.procs = {}
        for role in ("web", "async"):
            log = self.logs[role] = tmp_path / f"{name}-{role}.log"
            env = worker_env(OFFLOAD_ROLE=role, OFFLOAD_RELEASE=name,
                             OFFLOAD_WEB_BIND=f"127.0.0.1:{self.port}", WEB_CONCURRENCY=2)
            self.procs[role] = subprocess.Popen([sys.executable, "-m", "django", "offload", "run"],
                                                env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=ROOT)

    def output(self, role):
        return self.logs[role].read_text()

    def ready(self):
        return Server.objects.filter(release=self.name, state="running").count() == 2

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            p.wait(60)


@pytest.fixture
def start_release(tmp_path):
    started = []

    def start(name):
        release = Release(name, tmp_path)
        started.append(release)
        return release

    yield start
    for release in started:
        release.stop()


def test_rollover_loses_nothing_and_runs_nothing_twice(start_release):
    a = start_release("A")
    wait_until(a.ready, message="release A up")
    releases = [a]
    sent, failures, stop = [], [], threading.Event()

    def client():
        """An LB in front of the web servers: round robin, next server on a refused connection."""
        n = 0
        while not stop.is_set():
            ports = [r.port for r in releases]
            for attempt in range(len(ports)):
                port = ports[(n + attempt) % len(ports)]
                try:
                    url = f"http://127.0.0.1:{port}/enqueue?key=k{n}&sleep=0.2"
                    with urllib.request.urlopen(url, timeout=5) as response:
                        sent.append((f"k{n}", json.load(response)["id"]))
                    break
                except urllib.error.HTTPError as exc:
                    failures.append((n, exc.code))
                    break
                except (urllib.error.URLError, ConnectionError):
                    continue  # that server is gone: the next one
            else:
                failures.append(n)
            n += 1
            time.sleep(0.02)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        wait_until(lambda: Run.objects.count() >= 10, message="A working")
        b = start_release("B")
        wait_until(b.ready, message="release B up")
        releases.append(b)
        time.sleep(0.5)
        retire = subprocess.run([sys.executable, "-m", "django", "offload", "retire", "--keep-release", "B"],
                                env=worker_env(), capture_output=True, text=True, cwd=ROOT)
        retired_at = time.time()
        assert "Retiring 2 server(s)" in retire.stdout, retire.stdout + retire.stderr
        for p in a.procs.values():
            assert p.wait(30) == 0
        time.sleep(1.0)  # B alone keeps serving
    finally:
        stop.set()
        thread.join(30)

    assert not failures, f"requests failed: {failures}"
    assert len(sent) > 50
    keys = {key for key, _ in sent}
    wait_until(lambda: TaskRow.objects.filter(status="SUCCESSFUL").count() == len(sent),
               timeout=60, message="every task done")
    runs = Run.objects.values("key").annotate(n=Count("id"))
    assert {r["key"] for r in runs} == keys  # none lost
    assert max(r["n"] for r in runs) == 1  # none twice
    # A stopped claiming within 2 s of the retire: no task started on an A worker later.
    a_servers = list(Server.objects.filter(release="A", role="async").values_list("id", flat=True))
    late = [r.key for r in Run.objects.filter(started__gt=_at(retired_at + 2))
            if TaskRow.objects.get(pk=r.task_id).worker_ids.split(",")[-1].startswith(tuple(a_servers))]
    assert not late
    assert set(Server.objects.filter(release="A").values_list("state", flat=True)) == {"stopped"}
    assert "was retired" in a.output("async") and "retired; shutting down" in a.output("web")


def _at(timestamp):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC)
