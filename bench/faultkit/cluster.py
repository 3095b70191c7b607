"""A private PostgreSQL cluster for the fault suite: initdb in a temporary directory,
its own free port, trust auth, 127.0.0.1 only; stopped and removed at the end. The
shared server on 5432 is never touched. Example::

    with PrivateCluster() as pg:
        pg.restart("immediate")
        pg.stop(); ...; pg.start()

initdb refuses to run as root: as root, every PostgreSQL binary runs as the
``postgres`` user (``runuser -u postgres --``), which owns the directory.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PREFIX = "offload-faults-pg-"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_bindir():
    """PostgreSQL's bin directory: FAULTS_PG_BIN, else the newest /usr/lib/postgresql/*/bin."""
    if env := os.environ.get("FAULTS_PG_BIN"):
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    if path := shutil.which("initdb"):
        return Path(path).parent
    return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PrivateCluster:
    def __init__(self, bindir=None, port=None):
        self.bindir = Path(bindir) if bindir else find_bindir()
        if self.bindir is None:
            raise RuntimeError("no PostgreSQL binaries found (set FAULTS_PG_BIN)")
        self.port = port
        self.dir = None
        self.as_root = os.geteuid() == 0

    @property
    def data(self):
        return self.dir / "data"

    @property
    def logfile(self):
        return self.dir / "postgres.log"

    def _run(self, tool, *args, check=True, timeout=120):
        cmd = [str(self.bindir / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, timeout=timeout, capture_output=True, text=True)

    @classmethod
    def remove_stale(cls):
        """Stop and remove clusters left by a suite run that died (its owner pid is gone)."""
        for path in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
            try:
                owner = int((path / "owner.pid").read_text())
            except (OSError, ValueError):
                continue
            if _alive(owner):
                continue
            pidfile = path / "data" / "postmaster.pid"
            if pidfile.exists():
                try:
                    pm = int(pidfile.read_text().split()[0])
                    os.kill(pm, signal.SIGQUIT)  # immediate shutdown of that stale cluster
                except (OSError, ValueError, IndexError):
                    pass
            shutil.rmtree(path, ignore_errors=True)

    def create(self):
        self.remove_stale()
        self.dir = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self.dir / "owner.pid").write_text(str(os.getpid()))
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync", "--no-instructions")
        self.port = self.port or free_port()
        return self

    def start(self, timeout=60):
        # fsync=off: only the postmaster is ever killed here, never the machine, so the
        # WAL in the OS cache survives every fault the suite injects.
        opts = (f"-c port={self.port} -c listen_addresses=127.0.0.1 "
                f"-c unix_socket_directories={self.dir} -c max_connections=200 "
                "-c fsync=off -c shared_buffers=64MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", opts,
                  "-w", "-t", str(timeout), "start", timeout=timeout + 10)

    def stop(self, mode="fast", timeout=60):
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", str(timeout), "stop",
                  check=False, timeout=timeout + 10)

    def restart(self, mode="fast"):
        self.stop(mode)
        self.start()

    def running(self):
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def wait_ready(self, timeout=60):
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(**self.params("postgres"), connect_timeout=2).close()
                return
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def params(self, dbname):
        return {"host": "127.0.0.1", "port": self.port, "user": "postgres", "dbname": dbname}

    def destroy(self):
        if self.dir is None:
            return
        if self.data.exists():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self):
        try:
            self.create()
            self.start()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc):
        self.destroy()
