"""Offload behind PgBouncer in transaction pooling mode (Debian's ``pgbouncer``, a
private process on a port of its own): real worker processes whose task database
connection goes through it, set up as docs/deployment.md says, and the test process
enqueueing through it too (the web side in production).

Under CI=true a missing pgbouncer binary fails the test; elsewhere it is skipped."""

import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from django.db import DatabaseError, connection, connections
from django.tasks import TaskResultStatus, task_backends

from offload import bulk_enqueue
from offload.commands.release import MigrationLock
from offload.models import TaskRow
from offload.store import get_store
from offload.store.postgres import application_name
from tests.conftest import ROOT, free_port, wait_until, worker_env
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.process,
              pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL: PgBouncer")]

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


class PgBouncer:
    """A pgbouncer process of the test's own: ``pool_mode = transaction``, trust, on
    127.0.0.1:``port``, in front of the test databases. As root it runs as the
    ``postgres`` user (pgbouncer refuses to run as root)."""

    def __init__(self, extra=""):
        upstream = connections["default"].settings_dict
        self.user = upstream["USER"]
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="offload-pgbouncer-"))
        names = {connections[alias].settings_dict["NAME"] for alias in ("default", "tasks")}
        databases = "".join(f"{name} = host={upstream['HOST']} port={upstream['PORT']} dbname={name}\n"
                            for name in sorted(names))
        (self.dir / "users.txt").write_text(f'"{self.user}" "{upstream["PASSWORD"]}"\n')
        (self.dir / "pgbouncer.ini").write_text(
            f"[databases]\n{databases}\n[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"pool_mode = transaction\nauth_type = trust\nauth_file = {self.dir}/users.txt\n"
            f"admin_users = {self.user}\nlogfile = {self.dir}/pgbouncer.log\n"
            f"pidfile = {self.dir}/pgbouncer.pid\n{extra}")
        run_as = {}
        if os.geteuid() == 0:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.dir, postgres.pw_uid, postgres.pw_gid)
            run_as = {"user": postgres.pw_uid, "group": postgres.pw_gid, "extra_groups": []}
        self.proc = subprocess.Popen([PGBOUNCER, "-q", str(self.dir / "pgbouncer.ini")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, **run_as)

    def wait_ready(self):
        wait_until(self._accepts, timeout=10, message="pgbouncer to accept connections")

    @property
    def log(self):
        path = self.dir / "pgbouncer.log"
        return path.read_text() if path.exists() else ""

    def _accepts(self):
        if self.proc.poll() is not None:
            pytest.fail(f"pgbouncer exited with status {self.proc.returncode}:\n{self.log}")
        try:
            self.admin("SHOW VERSION")
        except psycopg.OperationalError:
            return False
        return True

    def admin(self, command):
        """Run ``command`` on the admin console; its rows as dicts."""
        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user, dbname="pgbouncer",
                             autocommit=True, prepare_threshold=None, connect_timeout=5) as conn:
            cursor = conn.execute(command)
            if cursor.description is None:
                return []
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def clients(self, name):
        """Its clients named ``name`` (application_name)."""
        return [c for c in self.admin("SHOW CLIENTS") if c["application_name"] == name]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # immediate shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def pgbouncer_version():
    out = subprocess.run([PGBOUNCER, "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(n) for n in re.search(r"PgBouncer (\d+)\.(\d+)", out).groups())


@pytest.fixture
def start_pgbouncer():
    if not os.path.exists(PGBOUNCER):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: pgbouncer is required (apt install pgbouncer)")
        pytest.skip("pgbouncer is not installed (apt install pgbouncer)")
    started = []

    def start(extra=""):
        started.append(PgBouncer(extra))
        started[-1].wait_ready()
        return started[-1]

    yield start
    for bouncer in started:
        bouncer.stop()


@pytest.fixture
def pgbouncer(start_pgbouncer):
    return start_pgbouncer()


@contextmanager
def connected_through(pgbouncer, alias):
    """A connection ``alias`` in this process: the default database through PgBouncer,
    set up as a web process behind it would be, named ``alias`` (application_name).
    (Registered in this thread only, not in DATABASES: the test case allows such
    connections.)"""
    default = connections["default"]
    connections[alias] = type(default)({
        **default.settings_dict, "PORT": pgbouncer.port, "DISABLE_SERVER_SIDE_CURSORS": True,
        "OPTIONS": {**default.settings_dict["OPTIONS"], "application_name": alias}}, alias)
    try:
        yield alias
    finally:
        connections[alias].close()
        del connections[alias]


@pytest.fixture
def pooled(pgbouncer, settings):
    settings.OFFLOAD_PREPARE = False
    with connected_through(pgbouncer, "pooled") as alias:
        yield alias


@contextmanager
def enqueueing_through(alias):
    """The default backend's enqueues (and result reads) go through ``alias``."""
    backend = task_backends["default"]
    backend.__dict__["store"] = get_store(alias)
    try:
        yield
    finally:
        del backend.__dict__["store"]


def worker_through(start_worker, pgbouncer, listen, **env):
    return start_worker("--processes", "1", "--threads", "3", env={
        "OFFLOAD_TEST_PGBOUNCER_PORT": pgbouncer.port, "OFFLOAD_TEST_LISTEN": listen, **env})


@pytest.mark.parametrize("listen", ["direct", "false"])
def test_a_worker_behind_pgbouncer_in_transaction_mode(start_worker, pgbouncer, pooled, listen):
    """LISTEN through a direct connection, or polling. Enqueued through PgBouncer (one
    task at a time and a COPY batch), claimed and completed through it: results read
    back, a failing task retried until it succeeds, a periodic task run, and a task
    that outlives its 1 s lease twice over keeps it. While PgBouncer is paused the
    worker's connection waits in it and a task enqueued directly stays READY: the
    claims go nowhere else."""
    worker = worker_through(start_worker, pgbouncer, listen,
                            OFFLOAD_TEST_LEASE=1, OFFLOAD_TEST_PERIODIC=1)
    worker.wait_started()
    with enqueueing_through(pooled):
        slow = tasks.logged.enqueue("slow", sleep=2.5)
        added = tasks.add.enqueue(2, 3)
        flaky = tasks.flaky.enqueue(succeed_on=2)
        batch = bulk_enqueue(tasks.echo, [((i,), {}) for i in range(150)])  # COPY
        assert pgbouncer.clients(pooled)  # this process is PgBouncer's client too
        ids = [added.id, flaky.id, *(r.id for r in batch)]
        wait_until(lambda: TaskRow.objects.filter(pk__in=ids, status="SUCCESSFUL").count() == len(ids),
                   timeout=20, message="the tasks enqueued through pgbouncer")
        assert tasks.add.get_result(added.id).return_value == 5
        assert tasks.echo.get_result(batch[-1].id).return_value == {"args": [149], "kwargs": {}}
        retried = tasks.flaky.get_result(flaky.id)
        assert (retried.status, retried.return_value, len(retried.errors)) == (
            TaskResultStatus.SUCCESSFUL, 2, 1)
    wait_until(lambda: tasks.logged.get_result(slow.id).is_finished, timeout=10, message="slow task")
    row = TaskRow.objects.get(pk=slow.id)
    assert (row.status, row.rescues, Run.objects.filter(key="slow").count()) == ("SUCCESSFUL", 0, 1)
    wait_until(lambda: TaskRow.objects.filter(task_path="tests.testapp.tasks.periodic_tick",
                                              status="SUCCESSFUL").exists(),
               timeout=10, message="a periodic task")

    process = application_name(row.worker_ids)  # its sessions' name (row: one attempt)
    assert pgbouncer.clients(process)  # the worker process is PgBouncer's client
    pgbouncer.admin("PAUSE")
    late = tasks.add.enqueue(1, 1)  # directly: this process's default alias
    wait_until(lambda: any(c["state"] == "waiting" for c in pgbouncer.clients(process)),
               timeout=10, message="the worker's query held by the paused pgbouncer")
    assert TaskRow.objects.get(pk=late.id).status == "READY"
    pgbouncer.admin("RESUME")
    wait_until(lambda: tasks.add.get_result(late.id).is_finished, timeout=10, message="resumed")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_prepared_statements_behind_pgbouncer_fail_naming_the_setting(start_pgbouncer, settings):
    """With Offload's default (prepared statements), two web processes enqueueing
    through PgBouncer in transaction mode collide in its one server session: the
    second's enqueue fails, and the error names the fix. With OFFLOAD_PREPARE = False
    both enqueue."""
    extra = "default_pool_size = 1\n"  # every client gets the same server session
    if pgbouncer_version() >= (1, 21):
        extra += "max_prepared_statements = 0\n"  # as before 1.21: it keeps none
    pgbouncer = start_pgbouncer(extra)
    with connected_through(pgbouncer, "web-1") as one, connected_through(pgbouncer, "web-2") as two:
        with enqueueing_through(one):
            tasks.noop.enqueue()  # prepares its statement (_pg3_0) in the server session
        with enqueueing_through(two), pytest.raises(DatabaseError) as failed:
            tasks.noop.enqueue()
        assert 'prepared statement "_pg3_0" already exists. ' in str(failed.value)
        assert str(failed.value).endswith("Set OFFLOAD_PREPARE = False in the settings.")
    settings.OFFLOAD_PREPARE = False
    with connected_through(pgbouncer, "web-1") as one, connected_through(pgbouncer, "web-2") as two:
        for alias in (one, two, one):
            with enqueueing_through(alias):
                tasks.noop.enqueue()
    assert TaskRow.objects.count() == 4


def migration_locks(granted):
    """The migration lock's holders (``granted``) or waiters in the test database."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s "
                       "AND objsubid = 1 AND granted = %s AND database = "
                       "(SELECT oid FROM pg_database WHERE datname = current_database())",
                       [MigrationLock.KEY, granted])
        return cursor.fetchone()[0]


def test_the_release_step_through_pgbouncer_waits_for_the_lock_and_leaves_none(pgbouncer, pooled,
                                                                               tmp_path):
    """``offload release`` through PgBouncer while another release step (this process,
    through PgBouncer too) holds the migration lock: it waits, then migrates once the lock
    is released, and no lock is left in any server session."""
    log = tmp_path / "release.log"
    with open(log, "w") as out, MigrationLock(connections[pooled]):
        assert migration_locks(granted=True) == 1
        proc = subprocess.Popen([sys.executable, "-m", "django", "offload", "release"],
                                env=worker_env(OFFLOAD_TEST_PGBOUNCER_PORT=pgbouncer.port),
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            wait_until(lambda: migration_locks(granted=False) == 1, timeout=20,
                       message="the release step waiting for the lock")
        except BaseException:
            proc.kill()
            raise
    assert proc.wait(60) == 0, log.read_text()
    assert "waiting for the migration lock" in log.read_text()
    assert "every migration is applied" in log.read_text()
    assert migration_locks(granted=True) == migration_locks(granted=False) == 0
