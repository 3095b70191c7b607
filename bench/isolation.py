"""Does background work hurt web latency? The Back Office's web role under the same
page load (bench/load/locustfile.py) in three arrangements on this 2-core machine:

- idle: the web role alone on core 0; no async server.
- split: web on core 0, the async server on core 1 working through a backlog of
  just-submitted applications (their whole pipeline: statement analysis is CPU work,
  the credit check waits on the bureau) — web and async roles on separate cores
  (they still share the SQLite file, its write lock, memory and disk).
- monolith: web and the same busy async server sharing core 0 — background work in
  the web machine's share, as a monolith (or a worker beside gunicorn) runs it.

The load generator (locust, in its own virtualenv) runs on core 1 in every
arrangement. In "split" it shares core 1 with the async server, so the async server
runs at nice 10 there: the client's own timing must not be delayed by the thing it
measures (the web core is untouched). Each arrangement starts from the same seeded
database (a copied SQLite file, or CREATE DATABASE … TEMPLATE on PostgreSQL), warms
up, then measures.

    .venv/bin/python bench/isolation.py --db both --pin-postgres --chart docs/isolation.png   # ~12 min
    .venv/bin/python bench/isolation.py --db sqlite --seconds 20              # a quick look

Without ``--pin-postgres`` the PostgreSQL rows use OFFLOAD_BENCH_PG_URL's server (by
default the local one), whose processes run on any core: its work for the async server
then lands on the web's core too, and "split" no longer separates anything.
"""

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv/bin/python")
LOAD_VENV = ROOT / "bench/.venv-load"
OUT = ROOT / "bench/results/isolation"
PASSWORD = "bench-staff"


def progress(message):
    print(f"[isolation] {message}", file=sys.stderr, flush=True)


def ensure_load_venv():
    requirements = ROOT / "bench/load/requirements.txt"
    stamp = LOAD_VENV / ".requirements"
    if stamp.exists() and stamp.read_text() == requirements.read_text():
        return
    progress("creating the load generator's virtualenv (bench/.venv-load)")
    python = subprocess.run([str(ROOT / "scripts/find-python")], capture_output=True, text=True,
                            check=True).stdout.strip()
    subprocess.run([python, "-m", "venv", str(LOAD_VENV)], check=True)
    subprocess.run([str(LOAD_VENV / "bin/pip"), "install", "-q", "--disable-pip-version-check", "-r",
                    str(requirements)], check=True)
    stamp.write_text(requirements.read_text())


class SqliteDb:
    """The embedded default: one file per arrangement, copied from the seeded one."""

    def __init__(self, name):
        self.var = OUT / name

    def create(self, template=None):
        shutil.rmtree(self.var, ignore_errors=True)
        if template:
            shutil.copytree(template.var, self.var)
        else:
            self.var.mkdir(parents=True)
        return self

    def env(self):
        return {"OFFLOAD_VAR_DIR": str(self.var)}

    def rows(self, sql):
        with sqlite3.connect(self.var / "backoffice.sqlite3", timeout=30) as db:
            return db.execute(sql).fetchall()

    def drop(self):
        shutil.rmtree(self.var, ignore_errors=True)


class PostgresDb:
    """A database per arrangement on the local server, copied from the seeded one
    (CREATE DATABASE … TEMPLATE). The server's processes are not pinned: they run
    wherever the kernel puts them, in every arrangement alike."""

    def __init__(self, name):
        self.name, self.var = f"offload_isolation_{name}", OUT / name
        self.url = urlsplit(os.environ.get("OFFLOAD_BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"))

    def _connect(self, dbname, **options):
        import psycopg

        return psycopg.connect(host=self.url.hostname, port=self.url.port or 5432, user=self.url.username,
                               dbname=dbname, **options)

    def _admin(self, sql):
        with self._connect("postgres", autocommit=True) as conn:
            conn.execute(sql)

    def create(self, template=None):
        shutil.rmtree(self.var, ignore_errors=True)
        self.var.mkdir(parents=True)
        self.drop()
        self._admin(f'CREATE DATABASE "{self.name}"' + (f' TEMPLATE "{template.name}"' if template else ""))
        return self

    def env(self):
        return {"OFFLOAD_VAR_DIR": str(self.var), "DATABASE_URL":
                f"postgres://{self.url.username}@{self.url.hostname}:{self.url.port or 5432}/{self.name}"}

    def rows(self, sql):
        with self._connect(self.name) as conn:
            return conn.execute(sql).fetchall()

    def drop(self):
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class PinnedPostgres:
    """A private PostgreSQL cluster pinned to core 1 (``--pin-postgres``), so the
    database's work for the async server cannot land on the web's core: the split
    arrangement then models web servers on their own machines with the database and
    the async servers elsewhere. Started from the system's PostgreSQL binaries (as the
    ``postgres`` user when run as root), stopped at the end."""

    def __init__(self):
        bindir = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1])
        self.pg_ctl, self.data, self.port = bindir / "pg_ctl", OUT / "pgdata", free_port()
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.parent.mkdir(parents=True, exist_ok=True)
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(OUT, "postgres")
        subprocess.run([*self.as_user, str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U",
                        "postgres"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*self.as_user, "taskset", "-c", "1", str(self.pg_ctl), "-D", str(self.data), "-w", "-l",
                        str(self.data / "log"), "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1",
                        "start"], check=True, stdout=subprocess.DEVNULL)
        os.environ["OFFLOAD_BENCH_PG_URL"] = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        progress(f"private PostgreSQL on port {self.port}, pinned to core 1")

    def stop(self):
        subprocess.run([*self.as_user, str(self.pg_ctl), "-D", str(self.data), "-m", "fast", "stop"],
                       stdout=subprocess.DEVNULL)
        shutil.rmtree(self.data, ignore_errors=True)


def env_for(db, port, role):
    return dict(os.environ, DJANGO_SETTINGS_MODULE="backoffice.settings", **db.env(),
                PYTHONPATH=f"{ROOT / 'backoffice'}:{ROOT}", DJANGO_DEBUG="0",
                OFFLOAD_STATIC_ROOT=str(OUT / "static"), OFFLOAD_WEB_BIND=f"127.0.0.1:{port}",
                LOANS_PUBLIC_URL=f"http://127.0.0.1:{port}", OFFLOAD_ROLE=role, OFFLOAD_RELEASE="bench",
                WEB_CONCURRENCY=os.environ.get("WEB_CONCURRENCY", "2"))


SESSION = """
import django
django.setup()
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
# One logged-in staff session for the load's underwriters: logging in (password
# hashing, ~0.5 s of CPU) is not the page load being measured.
user = User.objects.get(username="staff")
session = SessionStore()
session.update({"_auth_user_id": str(user.pk), "_auth_user_backend": "django.contrib.auth.backends.ModelBackend",
                "_auth_user_hash": user.get_session_auth_hash()})
session.create()
print(session.session_key)
"""


def prepare(kind, applications, backlog):
    """One seeded database (and the load's data file), copied for each arrangement."""
    template = kind("template").create()
    env = env_for(template, 0, "web")
    progress(f"seeding {applications} decided applications and {backlog} just submitted "
             "(the async server's backlog: their whole pipeline)")
    for command in (["offload", "release"], ["collectstatic", "--noinput", "-v0"],
                    ["seed_demo", "--applications", str(applications + backlog), "--pending", str(backlog),
                     "--staff-password", PASSWORD]):
        subprocess.run([PY, "-m", "django", *command], env=env, check=True, stdout=subprocess.DEVNULL)
    session = subprocess.run([PY, "-c", SESSION], env=env, check=True, capture_output=True,
                             text=True).stdout.split()[-1]
    rows = template.rows("SELECT id, reference FROM loans_application")
    statements_ = [bytes(r[0]).decode() for r in template.rows("SELECT content FROM loans_document LIMIT 5")]
    data = {"ids": [r[0] for r in rows], "references": [r[1] for r in rows], "statements": statements_,
            "session": session}
    (OUT / "load-data.json").write_text(json.dumps(data))
    return template


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd_prefix, env, log):
    return subprocess.Popen([*cmd_prefix, PY, "-m", "django", "offload", "run"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(url, procs, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"a server exited with {p.returncode}; see {OUT}/*.log")
        try:
            if urllib.request.urlopen(url + "/readyz", timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout}s")


def stop(procs):
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def cpu_seconds(session):
    """CPU time used so far by every process of a session (a server and its children)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # fields after the name: state ppid pgrp session ...
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def server_times(path, offset):
    """Request times inside gunicorn (its access log's last field, µs → ms) since ``offset``."""
    with open(path, "rb") as f:
        f.seek(offset)
        lines = f.read().decode(errors="replace").splitlines()
    return [int(line.rsplit(" ", 1)[1][:-2]) / 1000 for line in lines
            if line.startswith("127.0.0.1 ") and line.endswith("us")]


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else float("nan")


def locust(url, seconds, users, prefix):
    cmd = ["taskset", "-c", "1", str(LOAD_VENV / "bin/locust"), "-f", str(ROOT / "bench/load/locustfile.py"),
           "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", url,
           "--only-summary", "--loglevel", "WARNING"]
    if prefix:
        cmd += ["--csv", str(prefix)]
    env = dict(os.environ, BACKOFFICE_LOAD_DATA=str(OUT / "load-data.json"), BACKOFFICE_STAFF_PASSWORD=PASSWORD)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def aggregated(prefix):
    with open(f"{prefix}_stats.csv") as f:
        rows = list(csv.DictReader(f))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    if not int(total["Request Count"]):
        raise SystemExit(f"no request completed; see {prefix}_stats.csv and the server log")
    return {"requests": int(total["Request Count"]), "failures": int(total["Failure Count"]),
            "rps": round(float(total["Requests/s"]), 1), "p50_ms": float(total["50%"]),
            "p95_ms": float(total["95%"]), "p99_ms": float(total["99%"]),
            "by_page": {r["Name"]: float(r["99%"]) for r in rows if r["Name"] != "Aggregated"}}


ARRANGEMENTS = {
    # name: (web cpu list, async cpu list or None, async nice)
    "idle": ("0", None, 0),
    "split": ("0", "1", 10),
    "monolith": ("0", "0", 0),
}


def count(db, where):
    return db.rows(f"SELECT count(*) FROM offload_task WHERE {where}")[0][0]


def measure(name, kind, template, seconds, warmup, users):
    web_cpus, async_cpus, niceness = ARRANGEMENTS[name]
    db = kind(name).create(template)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    label = f"{'postgres' if kind is PostgresDb else 'sqlite'}-{name}"
    log = open(OUT / f"{label}.log", "w")
    procs = [start(["taskset", "-c", web_cpus], env_for(db, port, "web"), log)]
    if async_cpus:
        procs.append(start(["taskset", "-c", async_cpus, "nice", "-n", str(niceness)],
                           env_for(db, port, "async"), log))
    try:
        wait_ready(url, procs)
        progress(f"{name}: warming up for {warmup}s")
        locust(url, warmup, users, None)
        done_before = count(db, "status = 'SUCCESSFUL'")
        cpu_before = [cpu_seconds(p.pid) for p in procs]
        progress(f"{name}: measuring for {seconds}s with {users} users")
        log.flush()
        log_from = (OUT / f"{label}.log").stat().st_size
        began = time.monotonic()
        locust(url, seconds, users, OUT / label)
        elapsed = time.monotonic() - began
        cpu = [round((cpu_seconds(p.pid) - before) / elapsed * 100)
               for p, before in zip(procs, cpu_before, strict=True)]
        server_ms = server_times(OUT / f"{label}.log", log_from)
        done = count(db, "status = 'SUCCESSFUL'") - done_before
        left = count(db, "status = 'READY'")
    finally:
        stop(procs)
        log.close()
        db.drop()
    result = {"arrangement": name, "db": "postgres" if kind is PostgresDb else "sqlite",
              "web_cpus": web_cpus, "async_cpus": async_cpus or "-",
              "web_cpu_pct": cpu[0], "async_cpu_pct": cpu[1] if async_cpus else 0,
              "tasks_per_s": round(done / elapsed, 1), "backlog_left": left, **aggregated(OUT / label),
              **{f"server_p{p}_ms": round(percentile(server_ms, p), 1) for p in (50, 95, 99)}}
    if async_cpus and left == 0:  # (idle has no async server: its backlog is untouched)
        progress(f"WARNING: {name}: the backlog ran out; the async server was not busy throughout")
    return result


def report(rows, chart):
    from rich.console import Console
    from rich.table import Table

    idle = {r["db"]: r["p99_ms"] for r in rows if r["arrangement"] == "idle"}
    table = Table(title="Back Office web latency under the same page load (ms), with the async server busy or absent")
    for col in ("database", "arrangement", "web core", "async core", "requests", "failures", "p50", "p95", "p99",
                "p99 / idle", "server p50 / p99", "web CPU %", "async CPU %", "async tasks/s", "tasks left"):
        table.add_column(col, justify="left" if col in ("database", "arrangement") else "right")
    for r in rows:
        table.add_row(r["db"], r["arrangement"], r["web_cpus"], r["async_cpus"], str(r["requests"]),
                      str(r["failures"]), f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}", f"{r['p99_ms']:.0f}",
                      f"{r['p99_ms'] / idle[r['db']]:.2f}×" if r["db"] in idle else "-",
                      f"{r['server_p50_ms']:.0f} / {r['server_p99_ms']:.0f}",
                      str(r["web_cpu_pct"]), str(r["async_cpu_pct"]), f"{r['tasks_per_s']:.1f}", str(r["backlog_left"]))
    Console(width=200).print(table)
    pages = Table(title="p99 by page (ms)")
    names = sorted({page for r in rows for page in r["by_page"]})
    pages.add_column("database / arrangement")
    for page in names:
        pages.add_column(page, justify="right")
    for r in rows:
        pages.add_row(f"{r['db']} / {r['arrangement']}", *[f"{r['by_page'].get(p, 0):.0f}" for p in names])
    Console(width=160).print(pages)
    if chart:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 4))
        x = range(len(rows))
        for offset, key, color in ((-0.27, "p50_ms", "#2b6cb0"), (0, "p95_ms", "#63b3ed"), (0.27, "p99_ms", "#bee3f8")):
            ax.bar([i + offset for i in x], [r[key] for r in rows], width=0.27, color=color,
                   label=key.removesuffix("_ms"))
        ax.set_xticks(list(x), [f"{r['db']}\n{r['arrangement']}" for r in rows])
        ax.set_ylabel("ms")
        ax.set_title("Web request latency: idle, async on its own core (split), async on the web's core (monolith)",
                     fontsize=9)
        ax.legend()
        fig.tight_layout()
        fig.savefig(chart, dpi=110)
        progress(f"chart written to {chart}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="measured seconds per arrangement")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--users", type=int, default=20, help="simulated users (each ~1 request/s)")
    parser.add_argument("--applications", type=int, default=300)
    parser.add_argument("--backlog", type=int, default=3000, help="applications waiting for the async server")
    parser.add_argument("--only", nargs="*", choices=list(ARRANGEMENTS), default=list(ARRANGEMENTS))
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pin-postgres", action="store_true",
                        help="run a private PostgreSQL pinned to core 1 instead of OFFLOAD_BENCH_PG_URL's")
    parser.add_argument("--chart", help="write a chart (PNG) here")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("the isolation benchmark needs 2 cores (it pins web and async apart)")
    ensure_load_venv()
    OUT.mkdir(parents=True, exist_ok=True)
    pinned = PinnedPostgres() if args.pin_postgres and args.db != "sqlite" else None
    rows = []
    try:
        run_all(args, rows)
    finally:
        if pinned:
            pinned.stop()
    (OUT.parent / "isolation.json").write_text(json.dumps(rows, indent=2))
    report(rows, args.chart)


def run_all(args, rows):
    for kind in {"sqlite": [SqliteDb], "postgres": [PostgresDb], "both": [SqliteDb, PostgresDb]}[args.db]:
        progress(f"database: {kind.__name__}")
        template = prepare(kind, args.applications, args.backlog)
        try:
            rows += [measure(name, kind, template, args.seconds, args.warmup, args.users) for name in args.only]
        finally:
            template.drop()


if __name__ == "__main__":
    main()
