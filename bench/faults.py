"""The fault suite: real-process fault scenarios against Offload's real async server.

Each scenario starts real servers (``python -m django offload worker ...`` or
``offload run``), injects a fault — SIGKILL, SIGSTOP, SIGTERM, a PostgreSQL restart or
outage, corrupt rows, raising receivers — and counts, from a verification ledger kept
outside the task table (bench/faultkit/tasks.py), what was lost, what ran twice, what
was completed twice and what is stuck. PostgreSQL scenarios run on a private cluster
(bench/faultkit/cluster.py), never on the shared server. Every wait has a deadline, so
every scenario stops by itself; a missed expectation shows in the table and makes the
exit status 1. Examples::

    .venv/bin/python bench/faults.py                      # everything, both databases
    .venv/bin/python bench/faults.py --quick --db sqlite  # the CI sizes (tests/test_faults.py)
    .venv/bin/python bench/faults.py --only storm,corrupt --write docs/reliability.md
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.faultkit import procs  # noqa: E402
from bench.faultkit.cluster import PrivateCluster, free_port  # noqa: E402

FINAL = ("SUCCESSFUL", "FAILED")
BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"


class Abort(Exception):
    """The scenario cannot go on (a server did not start); the message says why."""


class Harness:
    """One database, one scenario at a time: the servers, the ledger, the counts."""

    def __init__(self, db, workdir, quick, cluster=None, million=None):
        self.db, self.workdir, self.quick, self.cluster = db, Path(workdir), quick, cluster
        self.million = million
        self.servers, self.orphans = [], []
        self.name = ""
        self.t0 = time.monotonic()
        self._samples = []
        self._sampling = None
        self._read = {}

    # -- output --------------------------------------------------------------

    def progress(self, message):
        print(f"[{self.db} {self.name} {time.monotonic() - self.t0:6.1f}s] {message}",
              file=sys.stderr, flush=True)

    # -- the database --------------------------------------------------------

    def q(self, sql, params=(), *, fetch=True, deadline=90.0):
        """Run SQL on the harness's own connection, riding out a database restart."""
        from django.db import InterfaceError, OperationalError, connection

        end = time.monotonic() + deadline
        while True:
            try:
                with connection.cursor() as cursor:
                    cursor.execute(sql, params)
                    return cursor.fetchall() if fetch else cursor.rowcount
            except (OperationalError, InterfaceError):  # the database is restarting or down
                connection.close()
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)

    def reset(self):
        tables = ["offload_task", "offload_series", "offload_stat", "offload_server", "offload_queue",
                  "offload_edge", "offload_workflow"]
        if self.db == "postgres":
            self.q(f"TRUNCATE {', '.join(tables)}", fetch=False)
        else:
            for table in tables:
                self.q(f"DELETE FROM {table}", fetch=False)

    def remaining(self):
        [(n,)] = self.q("SELECT count(*) FROM offload_task WHERE status IN ('READY', 'RUNNING', 'BLOCKED')")
        return n

    def running_ids(self, like=None):
        sql = "SELECT id FROM offload_task WHERE status = 'RUNNING'"
        if like:
            return [r[0] for r in self.q(sql + " AND claimed_by LIKE %s", [like + "%"])]
        return [r[0] for r in self.q(sql)]

    def enqueue(self, count, task="record", **kwargs):
        from bench.faultkit import tasks
        from offload import bulk_enqueue

        fn = getattr(tasks, task)
        ids, step, shown = [], 5000, time.monotonic()
        for start in range(0, count, step):
            results = bulk_enqueue(fn, [((), kwargs)] * min(step, count - start))
            ids += [int(r.id) for r in results]
            if time.monotonic() - shown > 5:
                shown = time.monotonic()
                self.progress(f"enqueued {len(ids):,}/{count:,}")
        return ids

    # -- servers -------------------------------------------------------------

    def env(self, **extra):
        path = os.pathsep.join(filter(None, [os.environ.get("FAULTS_SRC"), str(ROOT)]))
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="bench.faultkit.settings",
                   PYTHONPATH=path, FAULTS_LEDGER=str(self.ledger_dir),
                   FAULTS_APPNAME="offload", OFFLOAD_RELEASE="faults")
        env.pop("OFFLOAD_ROLE", None)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def start(self, *args, **env):
        server = procs.Server(args, self.env(**env),
                              self.workdir / f"{self.name}-{len(self.servers) + 1}.log")
        self.servers.append(server)
        return server

    def wait_registered(self, servers, timeout=60):
        """Until every server's registry row says running (or one exits)."""
        names = [s.name for s in servers]
        ok = self.wait_for(
            lambda: any(not s.running() for s in servers) or len(self.q(
                "SELECT id FROM offload_server WHERE state = 'running' AND id IN ("
                + ",".join(["%s"] * len(names)) + ")", names)) == len(names),
            timeout, "servers registered")
        return ok and all(s.running() for s in servers)

    def require(self, servers, timeout=60):
        """Wait until ``servers`` are registered and running, else abort the scenario."""
        if not self.wait_registered(servers, timeout):
            dead = [s for s in servers if not s.running()] or servers
            tail = dead[0].log.read_text(errors="replace").strip().splitlines()[-3:]
            raise Abort(f"server did not start (exit {dead[0].proc.poll()}): " + " / ".join(tail))

    def states(self):
        return dict(self.q("SELECT id, state FROM offload_server"))

    def wait_for(self, predicate, timeout, what="", every=10.0):
        """Poll ``predicate`` until true (True) or the deadline (False), showing progress."""
        deadline = time.monotonic() + timeout
        shown = time.monotonic()
        while True:
            if predicate():
                return True
            now = time.monotonic()
            if now > deadline:
                if what:
                    self.progress(f"deadline: {what} not reached within {timeout:g}s")
                return False
            if what and now - shown > every:
                shown = now
                self.progress(f"waiting for {what}")
            time.sleep(0.1)

    def wait_drained(self, n, timeout, note=lambda: ""):
        """Until no task is READY or RUNNING; progress every 5 s."""
        deadline = time.monotonic() + timeout
        shown = time.monotonic()
        while True:
            left = self.remaining()
            if left == 0:
                return True
            if self.servers and not any(s.running() for s in self.servers):
                self.progress(f"every server exited with {left:,} of {n:,} tasks not final")
                return False
            if time.monotonic() > deadline:
                self.progress(f"deadline: {left:,} of {n:,} tasks still not final after {timeout:g}s")
                return False
            if time.monotonic() - shown > 5:
                shown = time.monotonic()
                self.progress(f"{n - left:,}/{n:,} final {note()}")
            time.sleep(0.25)

    def cleanup(self):
        for server in self.servers:
            if server.running():
                server.stop(timeout=20)
        for pid in self.orphans:
            procs.kill(pid)
        procs.kill_leftovers()

    # -- RSS and connections ---------------------------------------------------

    def pids(self):
        return [p for s in self.servers for p in s.tree()] + [p for p in self.orphans if procs.alive(p)]

    def connections(self, pids):
        if self.db == "sqlite":
            return procs.open_files(pids, self.sqlite_path)
        import psycopg

        try:
            with psycopg.connect(**self.cluster.params("offload_faults"), connect_timeout=2,
                                 application_name="faults-harness") as conn:
                [(n,)] = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' AND application_name <> 'faults-harness'"
                ).fetchall()
                return n
        except psycopg.Error:
            return None

    def sample(self):
        pids = self.pids()
        return {"rss_mb": round(procs.rss_kb(pids) / 1024, 1), "connections": self.connections(pids)}

    def start_sampling(self, every=1.0):
        """Sample the servers' RSS and connections in the background (after: the last
        sample taken while a server lived)."""
        self._samples = []
        stop = threading.Event()

        def run():
            while not stop.wait(every):
                if self.pids():
                    self._samples.append(self.sample())

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._sampling = (stop, thread)

    def stop_sampling(self):
        if self._sampling:
            stop, thread = self._sampling
            stop.set()
            thread.join(5)
            self._sampling = None
        live = [s for s in self._samples if s["rss_mb"]]
        whole = [s for s in live if s["connections"] is not None] or live
        return (whole[0], whole[-1]) if whole else (None, None)

    # -- the ledger ------------------------------------------------------------

    def ledger(self):
        """``{task id: [(attempt, run), ...]}`` from every process's ledger file."""
        runs = {}
        for path in self.ledger_dir.glob("*.log"):
            for line in path.read_text().splitlines():
                task_id, attempt, run = line.split()
                runs.setdefault(int(task_id), []).append((int(attempt), run))
        return runs

    def ledger_lines(self):
        """Completed runs so far (lines in the ledger), read incrementally."""
        for path in self.ledger_dir.glob("*.log"):
            offset, count = self._read.get(path, (0, 0))
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1
            self._read[path] = (offset + end, count + chunk.count(b"\n", 0, end))
        return sum(count for _, count in self._read.values())

    def verify(self, good, bad=()):
        """lost, ran twice, completed twice and stuck, from the ledger and the rows."""
        rows = {r[0]: (r[1], r[2]) for r in self.q("SELECT id, status, return_value FROM offload_task")}
        runs = self.ledger()
        stuck = [i for i, (status, _) in rows.items() if status not in FINAL]
        lost = [i for i in good if i not in rows or (
            rows[i][0] in FINAL and (rows[i][0] != "SUCCESSFUL" or i not in runs))]
        twice = [i for i, r in runs.items() if len(r) > 1]
        # A row whose recorded result is not its newest run: a late result overwrote it.
        # Only tasks that return their run (record) say which run was recorded; a
        # workflow step returns what it computed (passes, tally).
        stale = [i for i in twice if rows.get(i, ("",))[0] == "SUCCESSFUL"
                 and _is_run(rows[i][1]) and json.loads(rows[i][1]) != max(runs[i])[1]]
        # Counted by the workers (offload_series; offload_stat: a previous release's).
        [(accepted,)] = self.q("SELECT (SELECT COALESCE(sum(tasks), 0) FROM offload_series "
                               "WHERE outcome = 'SUCCESSFUL') + (SELECT COALESCE(sum(tasks), 0) "
                               "FROM offload_stat WHERE outcome = 'SUCCESSFUL')")
        successful = sum(1 for status, _ in rows.values() if status == "SUCCESSFUL")
        extra = max(0, int(accepted) - successful)  # SUCCESSFUL outcomes accepted beyond one per task
        bad_wrong = [i for i in bad if rows.get(i, ("",))[0] not in ("FAILED", "READY", "RUNNING")]
        return {"lost": len(lost), "ran_twice": len(twice), "completed_twice": len(stale) + extra,
                "stuck": len(stuck), "_lost_ids": lost[:10], "_stuck_ids": stuck[:10],
                "_stale_ids": stale[:10], "_accepted_extra": extra, "_bad_not_failed": bad_wrong,
                "_twice_ids": twice}


def _is_run(stored):
    """Whether a stored return value is a run's name (``pid.n``, faultkit's record)."""
    value = json.loads(stored) if stored else None
    return isinstance(value, str) and re.fullmatch(r"[0-9]+\.[0-9]+", value) is not None


class Result:
    def __init__(self, scenario, db, tasks=0):
        self.row = {"scenario": scenario, "db": db, "tasks": tasks, "faults": "", "lost": None,
                    "ran_twice": None, "completed_twice": None, "stuck": None, "drain_s": None,
                    "rss_before_mb": None, "rss_after_mb": None, "conn_before": None,
                    "conn_after": None, "checks": [], "seconds": None}

    def check(self, name, ok, detail=""):
        self.row["checks"].append({"name": name, "ok": bool(ok), "detail": detail})
        return ok

    def counts(self, v):
        self.row.update({k: v[k] for k in ("lost", "ran_twice", "completed_twice", "stuck")})
        self.check("0 lost", v["lost"] == 0, f"lost ids (first 10): {v['_lost_ids']}")
        self.check("0 stuck", v["stuck"] == 0, f"not final (first 10): {v['_stuck_ids']}")
        self.check("0 completed twice", v["completed_twice"] == 0,
                   f"late results recorded: {v['_stale_ids']}; SUCCESSFUL outcomes accepted "
                   f"beyond one per task: {v['_accepted_extra']}")

    def samples(self, before, after):
        if before:
            self.row["rss_before_mb"], self.row["conn_before"] = before["rss_mb"], before["connections"]
        if after:
            self.row["rss_after_mb"], self.row["conn_after"] = after["rss_mb"], after["connections"]


# -- scenarios ---------------------------------------------------------------------


def storm(h, r):
    """SIGKILL storm: a worker process SIGKILLed every 1-2 s until the queue is drained,
    the supervisor instead at the 3rd, 8th, 13th... kill; a killed supervisor is replaced
    by a new server, as an orchestrator would; its orphaned workers must exit by themselves."""
    n, sleep, threads = (2000, 0.07, 4) if h.quick else (20000, 0.02, 8)
    limit = 150 if h.quick else 900
    r.row["tasks"] = n
    ids = h.enqueue(n, sleep=sleep)
    args = ("worker", "--processes", "2", "--threads", str(threads), "--grace", "10s")
    server = h.start(*args)
    h.require([server])
    h.wait_for(lambda: h.ledger_lines() > 0, 60, "first task done")
    h.start_sampling()
    t0 = time.monotonic()
    rnd = random.Random(10)
    kills = {"worker": 0, "supervisor": 0, "skipped": 0}
    while time.monotonic() - t0 < limit:
        if h.wait_for(lambda: h.remaining() == 0, rnd.uniform(1.0, 2.0)):
            break
        if (kills["worker"] + kills["supervisor"]) % 5 == 2:  # the 3rd, 8th, 13th... kill
            h.orphans += server.workers()
            procs.kill(server.pid)
            server.proc.wait()
            kills["supervisor"] += 1
            server = h.start(*args)  # the orchestrator's replacement
        else:
            workers = server.workers()
            if workers and procs.kill(rnd.choice(workers)):
                kills["worker"] += 1
            else:
                kills["skipped"] += 1  # no worker process alive right now (respawn delay)
        if sum(kills.values()) % 5 == 0:
            h.progress(f"{n - h.remaining():,}/{n:,} final, kills {kills}")
    drained = h.remaining() == 0
    r.row["drain_s"] = round(time.monotonic() - t0, 1)
    before, after = h.stop_sampling()
    r.samples(before, after)
    total = kills["worker"] + kills["supervisor"]
    r.row["faults"] = f"{total} SIGKILL ({kills['supervisor']} supervisor)"
    code = server.stop()
    orphans_gone = h.wait_for(lambda: not any(procs.alive(p) for p in h.orphans), 25,
                              "orphaned workers exit")
    v = h.verify(ids)
    r.counts(v)
    r.check("drained", drained, f"not drained within {limit}s")
    r.check("a storm, not a breeze", kills["worker"] >= 3 and kills["supervisor"] >= 1,
            f"only {kills['worker']} worker and {kills['supervisor']} supervisor kills before the drain")
    r.check("ran twice <= threads x kills", v["ran_twice"] <= threads * total,
            f"{v['ran_twice']} > {threads} x {total}")
    left = [p for p in h.orphans if procs.alive(p)]
    r.check("orphans exit", orphans_gone,
            f"{len(left)} worker process(es) of a killed supervisor still running 25 s after "
            f"the queue drained (pids {left}; see {h.workdir}/storm-*.log)")
    r.check("server stops with 0", code == 0, f"exit code {code}")
    if kills["skipped"]:
        r.row["faults"] += f", {kills['skipped']} rounds with no worker alive"


def sigstop(h, r):
    """SIGSTOP a worker process past its lease (LEASE_SECONDS=2): its tasks are rescued
    and run by a second server; after SIGCONT its late results are refused."""
    r.row["tasks"] = 22
    long_ids = h.enqueue(2, sleep=3.0)
    ids = long_ids + h.enqueue(20, sleep=0.05)
    env = {"FAULTS_LEASE": 2}
    first = h.start("worker", "--processes", "1", "--threads", "2", "--grace", "15s", **env)
    h.require([first])
    h.start_sampling()
    running = h.wait_for(lambda: len(h.running_ids(first.name)) == 2, 60, "both long tasks running")
    t0 = time.monotonic()
    frozen = first.workers()
    for pid in frozen:
        procs.kill(pid, signal.SIGSTOP)
    r.row["faults"] = f"SIGSTOP {len(frozen)} process"
    try:
        second = h.start("worker", "--processes", "1", "--threads", "2", **env)
        drained = h.wait_drained(len(ids), 60)
        r.row["drain_s"] = round(time.monotonic() - t0, 1)
    finally:
        for pid in frozen:
            procs.kill(pid, signal.SIGCONT)
    # A graceful stop records (or is refused) every outcome the frozen process holds
    # before it exits: once it has exited, its late writes have been tried.
    code = first.stop()
    before, after = h.stop_sampling()
    r.samples(before, after)
    second.stop()
    v = h.verify(ids)
    r.counts(v)
    [(rescued,)] = h.q("SELECT count(*) FROM offload_task WHERE rescues > 0 AND id IN (%s, %s)", long_ids)
    runs = h.ledger()
    late = [i for i in long_ids if any(run.split(".")[0] in map(str, frozen) for _, run in runs.get(i, []))]
    r.check("tasks running when frozen", running)
    r.check("drained", drained)
    r.check("frozen tasks rescued", rescued == 2, f"{rescued} of 2 rescued")
    r.check("frozen process finished its runs late", len(late) == 2,
            f"{len(late)} of 2 late runs in the ledger (their results must be refused)")
    r.check("ran twice only the frozen tasks", set(v["_twice_ids"]) <= set(long_ids),
            f"ran twice: {v['_twice_ids'][:10]}")
    r.check("frozen server stops with 0", code == 0, f"exit code {code}")


def corrupt(h, r):
    """Rows with task_path='nosuch.task' and errors '{bad' or '{}' ahead of good tasks:
    every damaged row ends FAILED, every good one SUCCESSFUL, and --burst exits."""
    n, nbad = (200, 8) if h.quick else (2000, 16)
    r.row["tasks"] = n + nbad
    bad = h.enqueue(nbad)
    for i, task_id in enumerate(bad):
        h.q("UPDATE offload_task SET task_path = 'nosuch.task', errors = %s WHERE id = %s",
            ["{bad" if i % 2 else "{}", task_id], fetch=False)
    good = h.enqueue(n)
    r.row["faults"] = f"{nbad} corrupt rows"
    limit = 60 if h.quick else 120
    server = h.start("worker", "--burst", "--processes", "1", "--threads", "4")
    h.start_sampling(0.5)
    t0 = time.monotonic()
    deadline = time.monotonic() + limit
    code = None
    while code is None and time.monotonic() < deadline:
        code = server.wait(1.0)
        if code is None:
            h.progress(f"{n + nbad - h.remaining():,}/{n + nbad:,} final")
    r.row["drain_s"] = round(time.monotonic() - t0, 1)
    before, after = h.stop_sampling()
    r.samples(before, after)
    if code is None:
        server.stop()
    v = h.verify(good, bad)
    r.counts(v)
    [(failed,)] = h.q("SELECT count(*) FROM offload_task WHERE status = 'FAILED' AND task_path = 'nosuch.task'")
    r.check("--burst exits 0", code == 0, "still running at the deadline" if code is None else f"exit code {code}")
    r.check("corrupt rows FAILED", failed == nbad, f"{failed} of {nbad} FAILED")
    r.check("0 ran twice", v["ran_twice"] == 0, f"{v['ran_twice']}")


def sigterm(h, r):
    """SIGTERM with 64 tasks in flight (2 processes x 32 threads, --grace 30s): the
    server finishes them within its grace, hands back the rest and exits 0; a burst
    server drains what was handed back."""
    n, sleep = (128, 1.5) if h.quick else (640, 3.0)
    r.row["tasks"] = n
    ids = h.enqueue(n, sleep=sleep)
    server = h.start("worker", "--processes", "2", "--threads", "32", "--grace", "30s")
    h.require([server])
    h.start_sampling(0.5)
    full = h.wait_for(lambda: len(h.running_ids()) == 64, 90, "64 tasks in flight")
    inflight = h.running_ids()
    at_signal = h.sample()
    t0 = time.monotonic()
    server.signal(signal.SIGTERM)
    r.row["faults"] = f"SIGTERM with {len(inflight)} in flight"
    code = server.wait(30 + 15)
    exit_s = time.monotonic() - t0
    before, _ = h.stop_sampling()
    r.samples(before, at_signal)
    if code is None:
        server.stop()
    statuses = dict(h.q("SELECT id, status FROM offload_task"))
    finished = sum(1 for i in inflight if statuses.get(i) == "SUCCESSFUL")
    running_after = sum(1 for s in statuses.values() if s == "RUNNING")
    burst = h.start("worker", "--burst", "--processes", "2", "--threads", "32")
    burst_code = burst.wait(120)
    r.row["drain_s"] = round(time.monotonic() - t0, 1)
    if burst_code is None:
        burst.stop()
    v = h.verify(ids)
    r.counts(v)
    r.check("64 in flight", full and len(inflight) == 64, f"{len(inflight)} in flight")
    r.check("exits 0 within the grace", code == 0 and exit_s <= 30 + 5,
            f"exit code {code} after {exit_s:.1f}s")
    r.check("in-flight tasks finished", finished == len(inflight), f"{finished} of {len(inflight)} SUCCESSFUL")
    r.check("nothing left RUNNING", running_after == 0, f"{running_after} RUNNING after exit")
    r.check("0 ran twice", v["ran_twice"] == 0, f"{v['ran_twice']}")
    r.check("burst drains the rest", burst_code == 0, f"exit code {burst_code}")


def receivers(h, r):
    """task_started and task_finished receivers that raise (FAULTS_RAISING_RECEIVERS=1):
    nothing lost or re-run, no process exits, and no slot leaks (four gather tasks
    still meet on the server's four threads)."""
    n = 200 if h.quick else 2000
    r.row["tasks"] = n + 4
    ids = h.enqueue(n, sleep=0.01)
    server = h.start("worker", "--processes", "1", "--threads", "4", "--grace", "10s",
                     FAULTS_RAISING_RECEIVERS=1)
    h.require([server])
    h.wait_for(lambda: server.workers() or not server.running(), 60)
    workers = server.workers()
    r.row["faults"] = "every receiver call raises"
    h.start_sampling(0.5)
    t0 = time.monotonic()
    drained = h.wait_drained(n, 60 if h.quick else 180)
    met = False
    gather = []
    if drained:
        gather = h.enqueue(4, task="gather", n=4)
        h.wait_drained(4, 40)
        met = dict(h.q("SELECT status, count(*) FROM offload_task WHERE task_path LIKE %s GROUP BY status",
                       ["%gather"])).get("SUCCESSFUL") == 4
    r.row["drain_s"] = round(time.monotonic() - t0, 1)
    before, after = h.stop_sampling()
    r.samples(before, after)
    same = server.workers() == workers
    code = server.stop()
    v = h.verify(ids + gather)
    r.counts(v)
    r.check("drained", drained)
    r.check("no slot leaked", met, "4 gather tasks did not run at once" if drained else "not drained")
    r.check("no worker process exited", same and bool(workers), f"{workers} -> replaced")
    r.check("0 ran twice", v["ran_twice"] == 0, f"{v['ran_twice']}")
    r.check("server stops with 0", code == 0, f"exit code {code}")


def _fleet(h, r, faults, n):
    """Web role + two async servers under load while ``faults`` hit PostgreSQL; then the
    fleet must be intact: both async servers running with registry rows 'running' and
    heartbeating again, the web server's row 'running' and heartbeating, /healthz 200."""
    import urllib.request

    r.row["tasks"] = n
    ids = h.enqueue(n, sleep=0.02)
    port = free_port()
    web = h.start("run", OFFLOAD_ROLE="web", OFFLOAD_WEB_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY=1)
    servers = [h.start("run", OFFLOAD_ROLE="async") for _ in range(2)]
    h.require([web, *servers])
    h.start_sampling()
    t0 = time.monotonic()
    recovered = None
    done = []
    for kind, fraction, arg in faults:
        h.wait_for(lambda fraction=fraction: n - h.remaining() >= fraction * n, 120, f"{fraction:.0%} done")
        if kind == "restart":
            h.progress(f"restarting PostgreSQL ({arg}) at {n - h.remaining():,}/{n:,} final")
            h.cluster.restart(arg)
            done.append(f"restart ({arg})")
        else:
            h.progress(f"PostgreSQL down for {arg}s at {n - h.remaining():,}/{n:,} final")
            h.cluster.stop("fast")
            end = time.monotonic() + arg
            while time.monotonic() < end:  # the outage lasts this long: the fault itself
                time.sleep(min(5.0, end - time.monotonic()))
                h.progress(f"outage: {max(0.0, end - time.monotonic()):.0f}s left")
            h.cluster.start()
            done.append(f"{arg}s outage")
        recovered = datetime.now(UTC)
    r.row["faults"] = ", ".join(done)
    drained = h.wait_drained(n, 180)
    r.row["drain_s"] = round(time.monotonic() - t0, 1)
    # Settle: every server has heartbeated a few times since the database came back
    # (or one exited): by then a server marked dead has seen it.
    names = [s.name for s in (web, *servers)]

    def fresh():
        rows = h.q("SELECT id FROM offload_server WHERE heartbeat_at >= %s",
                   [recovered + timedelta(seconds=5)])
        return len({x[0] for x in rows} & set(names)) == 3

    settled = h.wait_for(lambda: fresh() or not all(s.running() for s in (web, *servers)), 25,
                         "every server heartbeating after the recovery")
    states = h.states()
    beating = fresh()
    try:
        healthz = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).status
    except OSError as exc:
        healthz = str(exc)
    before, after = h.stop_sampling()
    r.samples(before, after)
    alive = [s.running() for s in servers]
    for s in (web, *servers):
        s.stop()
    v = h.verify(ids)
    r.counts(v)
    slots = 2 * 4
    r.check("drained", drained)
    r.check("ran twice <= slots x faults", v["ran_twice"] <= slots * len(faults),
            f"{v['ran_twice']} > {slots} x {len(faults)}")
    r.check("both async servers still running", all(alive), f"running: {alive}")
    r.check("async registry rows running", all(states.get(s.name) == "running" for s in servers),
            f"states: {[states.get(s.name) for s in servers]}")
    r.check("web registry row running", states.get(web.name) == "running", f"state: {states.get(web.name)}")
    r.check("every server heartbeating after recovery", settled and beating,
            "a heartbeat did not resume within 30 s of the recovery")
    r.check("web answers /healthz", healthz == 200, f"{healthz}")


def pg_restart(h, r):
    """PostgreSQL restarted twice under load (fast, then immediate)."""
    _fleet(h, r, [("restart", 0.2, "fast"), ("restart", 0.5, "immediate")], 1500 if h.quick else 10000)


def pg_outage(h, r):
    """A PostgreSQL outage past max(30 s, 2 x lease): 40 s (32 s in --quick)."""
    _fleet(h, r, [("outage", 0.2, 32 if h.quick else 40)], 1500 if h.quick else 6000)


def million(h, r):
    """1,000,000 no-op tasks (100,000 in --quick) through one server (2 processes x 16
    threads), RSS and database connections sampled: RSS must grow less than 10 %."""
    n = h.million or (100_000 if h.quick else 1_000_000)
    r.row["tasks"] = n
    ids = h.enqueue(n)
    server = h.start("worker", "--processes", "2", "--threads", "16")
    h.require([server])
    t0 = time.monotonic()
    # "Before" is taken warm: every thread and connection of the server has started
    # (10 % of the tasks done and at least 10 s of work, several heartbeat periods).
    h.wait_for(lambda: h.ledger_lines() > 0, 120, "first task done")
    warm = time.monotonic() + 10
    h.wait_for(lambda: h.ledger_lines() >= 0.10 * n and time.monotonic() >= warm, 1200,
               "10% done", every=30)
    before = h.sample()
    peak = [before["rss_mb"]]
    deadline = time.monotonic() + (3600 if n > 100000 else 300)
    shown = time.monotonic()
    drained = False
    while time.monotonic() < deadline:
        size = h.ledger_lines()
        if size >= n and h.remaining() == 0:
            drained = True
            break
        if time.monotonic() - shown > 5:
            shown = time.monotonic()
            s = h.sample()
            peak.append(s["rss_mb"])
            h.progress(f"{size:,}/{n:,} done, RSS {s['rss_mb']} MB, "
                       f"{s['connections']} connections")
        time.sleep(0.5)
    r.row["drain_s"] = round(time.monotonic() - t0, 1)
    after = h.sample()
    r.samples(before, after)
    r.row["faults"] = f"none (RSS peak {max(peak + [after['rss_mb']])} MB)"
    code = server.stop()
    v = h.verify(ids)
    r.counts(v)
    growth = (after["rss_mb"] - before["rss_mb"]) / before["rss_mb"] if before["rss_mb"] else None
    r.check("drained", drained)
    r.check("RSS growth < 10 %", growth is not None and growth < 0.10,
            f"{before['rss_mb']} -> {after['rss_mb']} MB ({growth:+.1%})" if growth is not None else "no sample")
    r.check("connections flat", after["connections"] is not None and before["connections"] is not None
            and after["connections"] <= before["connections"],
            f"{before['connections']} -> {after['connections']}")
    r.check("0 ran twice", v["ran_twice"] == 0, f"{v['ran_twice']}")
    r.check("server stops with 0", code == 0, f"exit code {code}")


def _counting(h, r, atomic):
    """Tasks that each add 1 to one counter row and sleep 20 ms, drained by two worker
    processes while one is SIGKILLed every 2 s (--quick: 300 atomic or 600 other tasks,
    every 0.5 s): the counter counts effects."""
    from bench.faultkit import tasks
    from offload import bulk_enqueue

    # --quick: an atomic drain runs one task at a time here (every task updates the same
    # row), so fewer tasks still see many kills; at-least-once needs more to see any.
    n, every = ((300 if atomic else 600), 0.5) if h.quick else (2000, 2.0)
    r.row["tasks"] = n
    h.q("CREATE TABLE IF NOT EXISTS faults_counter (name varchar(10) PRIMARY KEY, value integer NOT NULL)",
        fetch=False)
    h.q("DELETE FROM faults_counter", fetch=False)
    h.q("INSERT INTO faults_counter (name, value) VALUES ('c', 0)", fetch=False)
    ids = [int(t.id) for t in bulk_enqueue(tasks.count.using(atomic=atomic), [((), {"sleep": 0.02})] * n)]
    server = h.start("worker", "--processes", "2", "--threads", "4", "--grace", "10s")
    h.require([server])
    h.wait_for(lambda: h.ledger_lines() > 0, 60, "first task done")
    t0, limit, kills, rnd = time.monotonic(), 300, 0, random.Random(18)
    while time.monotonic() - t0 < limit:
        if h.wait_for(lambda: h.remaining() == 0, every):
            break
        workers = server.workers()
        if workers and procs.kill(rnd.choice(workers)):
            kills += 1
    drained = h.remaining() == 0
    r.row["drain_s"] = round(time.monotonic() - t0, 1)
    code = server.stop()
    v = h.verify(ids)
    r.counts(v)
    [(value,)] = h.q("SELECT value FROM faults_counter WHERE name = 'c'")
    r.row["counter"] = value
    r.row["faults"] = f"{kills} SIGKILL; counter {value:,}"
    r.check("drained", drained, f"not drained within {limit}s")
    r.check("killed mid-drain", kills >= 2, f"only {kills} kills before the drain")
    if atomic:
        r.check("counter exact", value == n, f"counter {value:,} for {n:,} tasks")
    else:  # what at-least-once does: every re-run after a kill adds again
        r.check("counter at least the tasks", value >= n, f"counter {value:,} for {n:,} tasks")
    r.check("server stops with 0", code == 0, f"exit code {code}")


def atomic(h, r):
    """Exactly-once effects: atomic=True tasks adding 1 to a counter under SIGKILLs end
    at exactly one addition per task."""
    _counting(h, r, atomic=True)


def at_least_once(h, r):
    """The same tasks without atomic=True: a task killed after its write runs again and
    adds again (the counter overshoots)."""
    _counting(h, r, atomic=False)


def chords(h, r):
    """Exactly-once fan-in: 50 rounds (--quick: 10), each a chain of 3, a chord (a group
    of 1,000 record tasks, then a tally callback that receives their results; --quick:
    100) and a diamond, on two servers, a worker process SIGKILLed during each chord's
    group. Every callback and every diamond's join runs exactly once (the ledger), and
    every result is passed along (the chain ends at 3, the chord's tally counts every
    member, the diamond's join gets both branches)."""
    from bench.faultkit import tasks
    from offload import Workflow, chain, chord, step

    reps, members = (10, 100) if h.quick else (50, 1000)
    r.row["tasks"] = reps * (3 + members + 1 + 4)
    args = ("worker", "--processes", "2", "--threads", "4", "--grace", "10s")
    servers = [h.start(*args), h.start(*args)]
    h.require(servers)
    rnd, kills, ids, joins, finals = random.Random(16), 0, [], [], []
    t0 = time.monotonic()
    for n in range(reps):
        line = chain(step(tasks.passes), step(tasks.passes), step(tasks.passes)).enqueue()
        fan = chord([step(tasks.record, sleep=0.01) for _ in range(members)], step(tasks.tally)).enqueue()
        diamond = Workflow()
        top = diamond.add(step(tasks.passes))
        left, right = diamond.add(step(tasks.passes), after=[top]), diamond.add(step(tasks.passes), after=[top])
        diamond.add(step(tasks.tally), after=[left, right])
        diamond = diamond.enqueue()
        for flow in (line, fan, diamond):
            ids += [int(s.id) for s in flow.steps]
        joins += [int(fan.steps[-1].id), int(diamond.steps[-1].id)]
        finals += [(int(line.steps[-1].id), "3"), (int(fan.steps[-1].id), str(members)),
                   (int(diamond.steps[-1].id), "2")]
        third = h.ledger_lines() + members // 3
        h.wait_for(lambda: h.ledger_lines() >= third, 60, "a third of the group ran")  # noqa: B023
        workers = [w for s in servers for w in s.workers()]
        if workers and procs.kill(rnd.choice(workers)):
            kills += 1
        if not h.wait_for(lambda: h.remaining() == 0, 120, f"round {n + 1}/{reps} finished"):
            break
        if (n + 1) % 10 == 0:
            h.progress(f"{n + 1}/{reps} rounds, {kills} kills")
    drained = h.remaining() == 0
    r.row["drain_s"] = round(time.monotonic() - t0, 1)
    codes = [s.stop() for s in servers]
    v = h.verify(ids)
    r.counts(v)
    runs = h.ledger()
    once = sum(1 for j in joins if len(runs.get(j, ())) == 1)
    rows = {i: (status, value, errors) for i, status, value, errors in h.q(
        "SELECT id, status, return_value, errors FROM offload_task WHERE id IN ("
        + ",".join(str(i) for i, _ in finals) + ")")}
    wrong = [f"{i}: {rows[i][0]} {rows[i][1]} (expected {want}) {rows[i][2][-300:]}"
             for i, want in finals if rows[i][1] != want]
    r.row["faults"] = f"{kills} SIGKILL; {once}/{len(joins)} fan-ins ran once"
    r.check("drained", drained, "a round did not finish within 120 s")
    r.check("a kill per round", kills == reps, f"{kills} kills for {reps} rounds")
    r.check("every fan-in ran exactly once", once == len(joins),
            f"{len(joins) - once} fan-ins ran 0 or 2+ times: "
            f"{[j for j in joins if len(runs.get(j, ())) != 1][:10]}")
    r.check("every result passed along", not wrong, f"{len(wrong)} final steps wrong: {wrong[:3]}")
    r.check("servers stop with 0", codes == [0, 0], f"exit codes {codes}")


SCENARIOS = [
    ("storm", ("sqlite", "postgres"), storm),
    ("sigstop", ("sqlite", "postgres"), sigstop),
    ("corrupt", ("sqlite", "postgres"), corrupt),
    ("sigterm", ("sqlite", "postgres"), sigterm),
    ("receivers", ("sqlite", "postgres"), receivers),
    ("pg-restart", ("postgres",), pg_restart),
    ("pg-outage", ("postgres",), pg_outage),
    ("million", ("sqlite", "postgres"), million),
    ("atomic", ("sqlite", "postgres"), atomic),
    ("at-least-once", ("sqlite", "postgres"), at_least_once),
    ("chords", ("sqlite", "postgres"), chords),
]
NAMES = [name for name, _, _ in SCENARIOS]


# -- one database in this process ----------------------------------------------------


def run_db(args):
    """Run the chosen scenarios on ``args.db`` in this process; return the rows."""
    workdir = Path(args.workdir or ROOT / "var" / "faults" / args.db)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    chosen = [s for s in SCENARIOS if args.db in s[1] and (not args.only or s[0] in args.only)]
    os.environ.update(FAULTS_DB=args.db, FAULTS_APPNAME="faults-harness",
                      DJANGO_SETTINGS_MODULE="bench.faultkit.settings")
    os.environ.pop("FAULTS_RAISING_RECEIVERS", None)
    cluster = None
    rows = []
    try:
        if args.db == "postgres":
            cluster = PrivateCluster()
            print("[postgres] starting a private cluster (initdb in a temporary directory)",
                  file=sys.stderr, flush=True)
            cluster.__enter__()
            cluster.wait_ready()
            import psycopg

            with psycopg.connect(**cluster.params("postgres"), autocommit=True) as conn:
                conn.execute("CREATE DATABASE offload_faults")
            os.environ["FAULTS_PG_PORT"] = str(cluster.port)
        else:
            os.environ["FAULTS_SQLITE"] = str(workdir / "faults.sqlite3")
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        h = Harness(args.db, workdir, args.quick, cluster, args.million)
        h.sqlite_path = os.environ.get("FAULTS_SQLITE")
        for name, _, fn in chosen:
            h.name, h.t0 = name, time.monotonic()
            h.servers, h.orphans = [], []
            h.ledger_dir, h._read = workdir / f"ledger-{name}", {}
            h.ledger_dir.mkdir()
            h.reset()
            h.progress(fn.__doc__.splitlines()[0])
            r = Result(name, args.db)
            try:
                fn(h, r)
            except Abort as exc:
                r.check("servers start", False, str(exc))
            except Exception:  # the scenario broke: report it, go on with the next one
                r.check("scenario ran", False, traceback.format_exc(limit=5))
            finally:
                h.stop_sampling()
                h.cleanup()
                shutil.rmtree(h.ledger_dir, ignore_errors=True)
            r.row["seconds"] = round(time.monotonic() - h.t0, 1)
            r.row["ok"] = all(c["ok"] for c in r.row["checks"])
            failed = [c["name"] for c in r.row["checks"] if not c["ok"]]
            h.progress(f"{'ok' if r.row['ok'] else 'FAILED: ' + ', '.join(failed)} "
                       f"({r.row['seconds']}s)")
            rows.append(r.row)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=1))
    finally:
        procs.kill_leftovers()
        if cluster is not None:
            cluster.destroy()
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


# -- the table -------------------------------------------------------------------------

COLUMNS = ["scenario", "db", "tasks", "kills/outages", "lost", "ran twice", "completed twice",
           "stuck", "time to drain", "RSS before/after", "connections before/after", "result"]


def _cells(row):
    def num(v):
        return "-" if v is None else f"{v:,}" if isinstance(v, int) else str(v)

    rss = (f"{row['rss_before_mb']} / {row['rss_after_mb']} MB"
           if row["rss_before_mb"] is not None else "-")
    conns = (f"{num(row['conn_before'])} / {num(row['conn_after'])}"
             if row["conn_before"] is not None or row["conn_after"] is not None else "-")
    failed = [c["name"] for c in row["checks"] if not c["ok"]]
    return [row["scenario"], row["db"], num(row["tasks"]), row["faults"] or "-", num(row["lost"]),
            num(row["ran_twice"]), num(row["completed_twice"]), num(row["stuck"]),
            "-" if row["drain_s"] is None else f"{row['drain_s']} s", rss, conns,
            "ok" if not failed else "FAIL: " + "; ".join(failed)]


def print_table(rows):
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Offload fault suite")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("scenario", "db", "kills/outages", "result") else "right",
                         overflow="fold")
    for row in rows:
        cells = _cells(row)
        style = None if row.get("ok") else "red"
        table.add_row(*cells, style=style)
    Console(width=220).print(table)
    for row in rows:
        for c in row["checks"]:
            if not c["ok"]:
                print(f"  {row['scenario']} ({row['db']}): {c['name']}: {c['detail']}".rstrip())


def code_version():
    """The commit the servers ran, and whether src/ had uncommitted changes."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    if src := os.environ.get("FAULTS_SRC"):
        return f"Offload from `{src}`"
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = " with uncommitted changes in src/" if git("status", "--porcelain", "--", "src") else ""
    return f"commit {commit}{dirty}"


def markdown(rows, command, started, seconds):
    lines = [f"Reproduced with `{command}` on {started:%Y-%m-%d} ({started:%H:%M} UTC), "
             f"{code_version()}, {seconds / 60:.1f} min in all:", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in _cells(row)) + " |")
    failures = [(row, c) for row in rows for c in row["checks"] if not c["ok"]]
    if failures:
        lines += ["", "Failed expectations:", ""]
        for row, c in failures:
            detail = " ".join(c["detail"].split())[:300]
            lines.append(f"- **{row['scenario']}** ({row['db']}): {c['name']}" + (f": {detail}" if detail else ""))
    lines += ["", "Time per scenario: " + ", ".join(
        f"{row['scenario']}/{row['db']} {row['seconds']} s" for row in rows) + "."]
    return "\n".join(lines)


def write_doc(path, text):
    path = Path(path)
    doc = path.read_text() if path.exists() else f"# Reliability\n\n{BEGIN}\n{END}\n"
    if BEGIN not in doc:
        doc += f"\n{BEGIN}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="the CI sizes (minutes, not an hour)")
    parser.add_argument("--only", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                        help=f"comma-separated scenarios: {','.join(NAMES)}")
    parser.add_argument("--million", type=int, help="tasks of the million scenario (default 1,000,000; --quick 20,000)")
    parser.add_argument("--json", help="write the rows as JSON here")
    parser.add_argument("--write", help="put the table into this Markdown file (docs/reliability.md)")
    parser.add_argument("--workdir", help="logs and databases (default var/faults/<db>)")
    parser.add_argument("--src", help="import Offload from this src/ directory instead (for example "
                        "`git archive <commit> src | tar -x -C /tmp/old` to see a fix's before)")
    args = parser.parse_args()
    if args.only and (unknown := set(args.only) - set(NAMES)):
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {', '.join(NAMES)}")
    started, t0 = datetime.now(UTC), time.monotonic()
    if args.src:
        os.environ["FAULTS_SRC"] = str(Path(args.src).resolve())
    if os.environ.get("FAULTS_SRC"):
        sys.path.insert(0, os.environ["FAULTS_SRC"])

    def on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    if args.db == "both":
        rows = []
        for db in ("sqlite", "postgres"):
            if args.only and not any(db in dbs for name, dbs, _ in SCENARIOS if name in args.only):
                continue
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                cmd = [sys.executable, __file__, "--db", db, "--json", out.name]
                cmd += ["--quick"] * args.quick + (["--only", ",".join(args.only)] if args.only else [])
                cmd += ["--million", str(args.million)] if args.million else []
                child = subprocess.Popen(cmd, env=dict(os.environ, FAULTS_CHILD="1"))
                try:
                    child.wait()
                except KeyboardInterrupt:
                    child.send_signal(signal.SIGINT)
                    child.wait(120)
                    raise
                text = Path(out.name).read_text()
                got = json.loads(text) if text.strip() else []
                if not got or child.returncode not in (0, 1):
                    broken = Result("(harness)", db).row
                    broken["checks"].append({"name": "harness ran", "ok": False,
                                             "detail": f"exit status {child.returncode}"})
                    got.append({**broken, "ok": False, "seconds": 0})
                rows += got
    else:
        rows = run_db(args)
    if not os.environ.get("FAULTS_CHILD"):  # the parent prints both databases' rows
        print_table(rows)
    if args.write:
        if os.environ.get("FAULTS_MAKE"):  # started by make faults
            extra = os.environ.get("FAULTS_ARGS", "").strip()
            command = "make faults" + (f" FAULTS_ARGS='{extra}'" if extra else "")
        else:
            command = " ".join([".venv/bin/python", "bench/faults.py", *sys.argv[1:]])
        write_doc(args.write, markdown(rows, command, started, time.monotonic() - t0))
        print(f"table written to {args.write}", file=sys.stderr)
    sys.exit(0 if rows and all(row.get("ok") for row in rows) else 1)


if __name__ == "__main__":
    main()
