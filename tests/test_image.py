"""The image, built and run for real: ``make image`` with buildah on a local Debian 13
base (``deploy/local-base``), then the same image run three times, differing only in
environment, against a PostgreSQL database this test creates — the release step, the
web role (a request enqueues a task) and the async role (it runs that task).

Containers run under ``buildah run --isolation chroot`` with the host's network: the
way to run an image where no container engine can (no Docker engine here, and podman
cannot start containers in this sandbox). Their processes are host processes, so a
stop is SIGTERM to the container's main process, as ``docker stop`` sends it.

Runs in the PostgreSQL pass of the suite. It needs root, buildah and debootstrap
(``.ci/run`` installs them); elsewhere it is skipped with a notice (a failure under
CI=true). The base image and the build's layers stay in buildah's storage, so a second
run only builds what changed.
"""

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, free_port, wait_until
from tests.test_backoffice import _statement, submit
from tests.test_quickstart import _get

pytestmark = pytest.mark.process
CI = os.environ.get("CI") == "true"
BASE = "localhost/offload-base:trixie"
IMAGE = "localhost/offload-backoffice:test"


def _need_builder():
    missing = [tool for tool in ("buildah", "debootstrap") if not shutil.which(tool)]
    problem = (f"{' and '.join(missing)} not installed (apt-get install buildah debootstrap)"
               if missing else None if os.geteuid() == 0 else "buildah and debootstrap need root here")
    if problem:
        if CI:
            pytest.fail(f"CI=true: the image test is required, but {problem}")
        pytest.skip(f"image not built: {problem}")
    if os.environ.get("OFFLOAD_TEST_DB", "sqlite") != "postgres":
        pytest.skip("the image test runs in the PostgreSQL pass")


@pytest.fixture(scope="module")
def image():
    """Build the image as CI does (make image); return its size and build time."""
    _need_builder()
    subprocess.run([ROOT / "deploy/local-base", BASE], check=True, timeout=900, capture_output=True)
    started = time.monotonic()
    build = subprocess.run(["make", "--no-print-directory", "image"], cwd=ROOT, timeout=900,
                           env={**os.environ, "BASE": BASE, "BUILDER": "buildah", "IMAGE": IMAGE},
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-5000:] + build.stderr[-5000:]
    seconds = time.monotonic() - started
    [info] = json.loads(subprocess.run(["buildah", "images", "--json", IMAGE], check=True,
                                       capture_output=True, text=True).stdout)
    print(f"\nimage {IMAGE}: {info['size']} (built in {seconds:.0f} s)")
    return info


class Container:
    """A working container of the image, running its entrypoint and command (or
    ``command``) with ``env`` — what ``docker run -e ... IMAGE [command]`` does."""

    def __init__(self, env, command=None, log=None):
        self.id = subprocess.run(["buildah", "from", "--quiet", IMAGE], check=True,
                                 capture_output=True, text=True).stdout.strip()
        config = json.loads(subprocess.run(["buildah", "inspect", "--type", "image", IMAGE],
                                           check=True, capture_output=True, text=True).stdout)
        oci = config["OCIv1"]["config"]
        argv = oci["Entrypoint"] + (command or oci["Cmd"])
        flags = [f"--env={k}={v}" for k, v in env.items()]
        self.log = log
        self.proc = subprocess.Popen(["buildah", "run", "--isolation", "chroot", "--network", "host",
                                      *flags, self.id, "--", *argv],
                                     stdout=open(log, "w") if log else subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def main_pid(self):
        """The container's main process (its PID 1 under an engine), a host process: the
        first below buildah's own (the web role's entrypoint execs gunicorn)."""
        for pid in _descendants(self.proc.pid):
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
            except FileNotFoundError:
                continue
            if not name.startswith(("buildah", "memfd:buildah")):
                return pid
        return None

    def uids(self):
        """The user ids of every process of the container below buildah's own."""
        main = self.main_pid()
        found = set()
        for pid in [main, *_descendants(main)] if main else []:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                continue
            found.add(int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1]))
        return found

    def stop(self, timeout=60):
        """SIGTERM to the main process, as a container stop; the exit status."""
        if (pid := self.main_pid()) is not None:
            os.kill(pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.remove()

    def remove(self):
        """Kill whatever of the container still runs (its processes first: killing
        buildah alone leaves them running), then delete the working container."""
        if self.proc.poll() is None:
            for pid in reversed(_descendants(self.proc.pid)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["buildah", "rm", self.id], capture_output=True)


def _descendants(pid):
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*") if Path(f"/proc/{parent}").exists() else []:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue
            out += children
            todo += children
    return out


@pytest.fixture
def database():
    import psycopg

    url = urlsplit(os.environ.get("OFFLOAD_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/offload"))
    name = f"image_{uuid.uuid4().hex[:10]}"
    params = dict(host=url.hostname or "127.0.0.1", port=url.port or 5432, user=url.username or "postgres")
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://{params['user']}@{params['host']}:{params['port']}/{name}", \
            lambda sql, *args: psycopg.connect(dbname=name, autocommit=True, **params).execute(sql, args).fetchall()
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_one_image_runs_the_release_step_the_web_role_and_the_async_role(image, database, tmp_path):
    url, sql = database
    port = free_port()
    # What differs between the roles is the environment, and only OFFLOAD_ROLE.
    env = {"DATABASE_URL": url, "DJANGO_SECRET_KEY": "image-test", "DJANGO_DEBUG": "0",
           "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "OFFLOAD_RELEASE": "image-test",
           "OFFLOAD_WEB_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1",
           "LOANS_BUREAU_FAILURE_RATE": "0", "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend"}
    release = Container(env, ["release"])
    out, _ = release.proc.communicate(timeout=300)
    release.remove()
    assert release.proc.returncode == 0, out
    assert "Release step done" in out

    web = Container({**env, "OFFLOAD_ROLE": "web"}, log=tmp_path / "web.log")
    worker = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: web.proc.poll() is not None or _get(f"{base}/healthz") == 200,
                   timeout=120, message="the web role to answer /healthz")
        assert web.proc.poll() is None, (tmp_path / "web.log").read_text()
        assert _get(f"{base}/readyz") == 200
        assert _get(f"{base}/static/admin/css/base.css") == 200  # collected at build time
        assert web.uids() == {10001}, "the web role runs as the image's user, not root"
        status, page_url, _ = submit(base, _statement(tmp_path), business_name="Image Bakery")
        assert status == 200 and "/status/" in page_url
        enqueued = dict(sql("SELECT id, status FROM offload_task"))
        # The web role runs nothing: the application's workflow waits (scoring BLOCKED).
        assert enqueued and set(enqueued.values()) == {"READY", "BLOCKED"}
        ids = list(enqueued)

        worker = Container({**env, "OFFLOAD_ROLE": "async"}, log=tmp_path / "async.log")
        wait_until(lambda: worker.proc.poll() is not None
                   or sql("SELECT DISTINCT status FROM offload_task WHERE id = ANY(%s)", ids)
                   == [("SUCCESSFUL",)],
                   timeout=120, message="the async role to run the web role's task")
        assert worker.proc.poll() is None, (tmp_path / "async.log").read_text()
        assert worker.uids() == {10001}
        servers = {role for role, in sql("SELECT role FROM offload_server WHERE release = %s", "image-test")}
        assert servers == {"web", "async"}
        assert worker.stop() == 0, (tmp_path / "async.log").read_text()
        worker = None
        assert web.stop() == 0, (tmp_path / "web.log").read_text()
    finally:
        for container in (web, worker):
            if container is not None:
                container.remove()


def test_the_image_holds_no_secrets_and_no_build_tools(image):
    ctr = subprocess.run(["buildah", "from", "--quiet", IMAGE], check=True, capture_output=True,
                         text=True).stdout.strip()
    try:
        root = Path(subprocess.run(["buildah", "mount", ctr], check=True, capture_output=True,
                                   text=True).stdout.strip())
        for path in ("run/secrets", "etc/pip.conf", "root/.config/pip", "app/.config/pip",
                     "opt/venv/bin/pip", "opt/build", "wheels", "src"):
            assert not (root / path).exists(), f"/{path} is in the image"
        for tool in ("gcc", "cc", "make", "git"):
            assert not (root / "usr/bin" / tool).exists(), f"{tool} is in the image"
        assert not list((root / "app").rglob("*.sqlite3")), "a database file is in the image"
        history = subprocess.run(["buildah", "inspect", "--type", "image", IMAGE], check=True,
                                 capture_output=True, text=True).stdout
        # The secrets were mounted for one RUN: their content is in no layer's history.
        assert "cert = /run/secrets/pipcert" not in history and "index-url =" not in history
    finally:
        subprocess.run(["buildah", "umount", ctr], capture_output=True)
        subprocess.run(["buildah", "rm", ctr], capture_output=True)
