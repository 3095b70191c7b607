"""Roles, the server registry, the release fence, health and the release step."""

import io
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.tasks import task_backends
from django.test import override_settings

from offload import registry, roles
from offload.checks import check_roles
from offload.clock import now
from offload.models import Server, TaskRow
from tests.conftest import ROOT, wait_until, worker_env
from tests.testapp import tasks
from tests.testapp.models import Run


def test_roles_resolve_from_one_settings_module(monkeypatch):
    monkeypatch.setenv("OFFLOAD_ROLE", "web")
    assert roles.resolve() == ("web", None)
    monkeypatch.setenv("OFFLOAD_ROLE", "async-bulk")
    kind, profile = roles.resolve()
    assert kind == "async" and profile.queues == ["reports"] and profile.grace == 5
    monkeypatch.setenv("OFFLOAD_ROLE", "all")
    assert roles.resolve()[1].name == "async"  # the built-in default profile
    monkeypatch.setenv("OFFLOAD_ROLE", "asink")
    with pytest.raises(ValueError, match="not a role"):
        roles.resolve()


def test_role_checks(monkeypatch):
    assert check_roles() == []
    monkeypatch.setenv("OFFLOAD_ROLE", "nope")
    [error] = check_roles()
    assert error.id == "offload.E005" and "nope" in error.msg
    monkeypatch.delenv("OFFLOAD_ROLE")
    with override_settings(OFFLOAD_PROFILES={"async-crm": {"queues": ["crm"]}}):
        [error] = check_roles()
    assert error.id == "offload.E006" and "crm" in error.msg and "default" in error.hint
    with override_settings(OFFLOAD_PROFILES={"async-x": {"reserve": "lots"}}):
        [error] = check_roles()
    assert error.id == "offload.E005" and "SLOTS:PRIORITY" in error.msg


@pytest.mark.django_db
def test_a_retired_server_cannot_claim():
    store = task_backends["default"].store
    tasks.noop.enqueue()
    registry.register("old-1", role="async", release="A", db="default", pid=1)
    claim = {"backend": "default", "queues": [], "limit": 5, "worker": "old-1-1", "lease": 30,
             "server": "old-1"}
    assert registry.retire(keep_release="B", db="default") == ["old-1"]
    assert store.claim(now=now(), **claim) == []
    assert store.claim_limited(queue="default", cluster_max=5, now=now(),
                               **{k: v for k, v in claim.items() if k != "queues"}) == []
    registry.set_state("old-1", "running", db="default")
    assert len(store.claim(now=now(), **claim)) == 1


@pytest.mark.django_db
def test_silent_servers_are_marked_dead():
    registry.register("quiet-1", role="async", release="A", db="default", pid=1)
    Server.objects.filter(id="quiet-1").update(heartbeat_at=now() - timedelta(minutes=5))
    registry.register("alive-1", role="async", release="A", db="default", pid=2)
    assert registry.mark_dead(db="default", silent_for=60) == ["quiet-1"]
    assert Server.objects.get(id="quiet-1").state == "dead"
    # Dead is an observation: a server that heartbeats again (its database was only
    # unreachable) is running again, and one that drains shows as retiring.
    assert registry.beat("quiet-1", db="default") == "running"
    assert registry.mark_dead(db="default", silent_for=60) == []
    assert registry.beat("alive-1", db="default", draining=True) == "retiring"


@pytest.mark.django_db(transaction=True)
def test_retire_drains_the_old_release(start_worker):
    slow = tasks.logged.enqueue("in-flight", sleep=1.5)
    old = start_worker("--processes", "1", "--threads", "2", env={"OFFLOAD_RELEASE": "A"})
    old.wait_started()
    wait_until(lambda: Run.objects.filter(key="in-flight").exists(), message="task running")
    new = start_worker("--processes", "1", "--threads", "2", env={"OFFLOAD_RELEASE": "B"})
    new.wait_started()
    out = subprocess.run([sys.executable, "-m", "django", "offload", "retire", "--keep-release", "B"],
                         env=worker_env(), capture_output=True, text=True, cwd=ROOT)
    assert "Retiring 1 server(s)" in out.stdout, out.stdout + out.stderr
    assert old.wait(20) == 0
    assert "was retired" in old.output
    assert tasks.logged.get_result(slow.id).status == "SUCCESSFUL"  # finished, not dropped
    after = tasks.add.enqueue(1, 2)
    wait_until(lambda: tasks.add.get_result(after.id).is_finished, timeout=10, message="B serves")
    assert TaskRow.objects.get(pk=after.id).claimed_by is None
    assert tasks.add.get_result(after.id).worker_ids[0].startswith(
        Server.objects.get(release="B").id)
    assert Server.objects.get(release="A").state == "stopped"
    new.signal(signal.SIGTERM)


@pytest.mark.django_db(transaction=True)
def test_auto_retire_when_the_new_release_is_up(start_worker):
    old = start_worker("--processes", "1", "--threads", "1",
                       env={"OFFLOAD_RELEASE": "A", "OFFLOAD_AUTO_RETIRE": "1"})
    old.wait_started()
    new = start_worker("--processes", "1", "--threads", "1",
                       env={"OFFLOAD_RELEASE": "B", "OFFLOAD_AUTO_RETIRE": "1"})
    new.wait_started()
    assert old.wait(20) == 0
    assert new.proc.poll() is None


@pytest.mark.django_db
def test_health_endpoints_ignore_the_host_header(client):
    assert client.get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    response = client.get("/readyz", HTTP_HOST="pod-ip")
    assert response.status_code == 200 and response.json() == {"ready": True, "reason": "ok"}
    assert client.get("/other", HTTP_HOST="pod-ip").status_code == 400  # ALLOWED_HOSTS still applies


@pytest.mark.django_db(transaction=True)
def test_health_command_and_release_step(start_worker):
    def health():
        return subprocess.run([sys.executable, "-m", "django", "offload", "health"],
                              env=worker_env(), capture_output=True, text=True, cwd=ROOT)

    assert health().returncode == 1
    worker = start_worker("--processes", "1", "--threads", "1")
    worker.wait_started()
    wait_until(lambda: health().returncode == 0, timeout=10, message="healthy")
    releases = [subprocess.Popen([sys.executable, "-m", "django", "offload", "release"],
                                 env=worker_env(), stdout=subprocess.PIPE, text=True, cwd=ROOT)
                for _ in range(2)]
    outputs = [p.communicate(timeout=60)[0] for p in releases]
    assert [p.returncode for p in releases] == [0, 0]
    assert all("every migration is applied" in out for out in outputs)


def test_release_step_is_idempotent(db):
    out = io.StringIO()
    call_command("offload", "release", stdout=out)
    assert "No migrations to apply" in out.getvalue()
