"""``manage.py offload <command>`` (or the ``offload`` console script): thin argument
parsing over Offload's parts. ``offload --help`` lists the commands, ``offload COMMAND
--help`` their flags; docs/cli.md is generated from this parser (``python -m
offload.clidoc``). Example::

    manage.py offload worker [--queues a,b] [--processes N] [--threads N] [--grace 30s] [--burst]
    manage.py offload prune --older-than 7d
    manage.py offload run            # the web role and the async server together (local use)
    manage.py offload worker --reload  # restart on code changes (the default under DEBUG)

A database that does not answer, does not exist or is not migrated is one line on
stderr naming the fix (``offload.dbcheck``), for every command, and exit status 1.
"""

import argparse
import os
import re
import subprocess
import sys

from django.core.management.base import BaseCommand, CommandError
from django.tasks import task_backends
from django.tasks.exceptions import InvalidTaskBackend

from offload import dbcheck
from offload.conf import parse_duration
from offload.worker import reload as devloop


class Command(BaseCommand):
    help = ("Offload: run the async server and the web role, and look after queues, tasks, "
            "servers and releases.")

    def add_arguments(self, parser):
        # The console script runs this command as "offload offload", python -m django as
        # "__main__.py offload": say "offload worker ..." and "python -m django offload ...".
        words = parser.prog.split()
        if words[:2] == ["offload", "offload"]:
            parser.prog = "offload"
        elif words[:1] == ["__main__.py"]:
            parser.prog = " ".join(["python -m django", *words[1:]])
        parser.epilog = f"'{parser.prog} COMMAND --help' shows the flags of a command."
        sub = parser.add_subparsers(dest="action", required=True, metavar="COMMAND", title="commands")

        def command(name, text):
            return sub.add_parser(name, help=text, description=text)

        worker = command("worker", "Run the async server (supervisor + worker processes).")
        worker.add_argument("--backend", default="default",
                            help="TASKS alias of an Offload backend (default: %(default)s).")
        worker.add_argument("--queues", help="Comma-separated queues (default: every queue the backend declares).")
        worker.add_argument("--processes", type=int, default=None, help="Worker processes (default: CPU count).")
        worker.add_argument("--threads", type=int, default=4, help="Task threads per process (default: %(default)s).")
        worker.add_argument("--grace", default="30s", metavar="DURATION",
                            help="Time to finish in-flight tasks on SIGTERM: 30s, 2m; a bare number is seconds (default: %(default)s).")
        worker.add_argument("--burst", action="store_true", help="Exit 0 once no runnable task is left.")
        worker.add_argument("--reserve", metavar="SLOTS:PRIORITY",
                            help="Per process, keep SLOTS threads for tasks of at least PRIORITY (e.g. 2:50).")
        worker.add_argument("--queue-limit", metavar="QUEUE=N", action="append", default=[],
                            help="At most N tasks of QUEUE at once in each process (repeatable).")
        worker.add_argument("--role", default="async", help="Role recorded in the server registry.")
        _reload_flags(worker, "; not with --burst")

        backend_help = "TASKS alias of an Offload backend (default: %(default)s)."
        for name, text in (("pause", "Stop every server from starting tasks of a queue (they stay queued)."),
                           ("resume", "Let servers start tasks of a paused queue again.")):
            cmd = command(name, text)
            cmd.add_argument("queue", help=f"The queue to {name}, one of the backend's QUEUES.")
            cmd.add_argument("--backend", default="default", help=backend_help)
        queues = command("queues", "List queues: ready, running, paused or active, cluster limit.")
        queues.add_argument("--backend", default="default", help=backend_help)

        prune = command("prune", "Delete finished tasks older than an age.")
        prune.add_argument("--backend", default="default", help=backend_help)
        prune.add_argument("--older-than", required=True, metavar="AGE",
                           help="Age with a unit: 7d, 12h, 30m or 90s (a bare number is refused).")

        run = command("run", "Start this process's role (OFFLOAD_ROLE): web, async, all or a profile.")
        run.add_argument("--role", help="Override OFFLOAD_ROLE.")
        run.add_argument("--addr", default=None, help="Web bind address (default: OFFLOAD_WEB_BIND or 127.0.0.1:8000).")
        _reload_flags(run, "; roles all and async: the web role never reloads, use runserver")

        servers = command("servers", "List registered servers: role, release, state, heartbeat age.")
        servers.add_argument("--all", action="store_true", help="Include stopped and dead servers.")
        retire = command("retire", "Tell every server of another release to finish its work and exit.")
        retire.add_argument("--keep-release", required=True, metavar="RELEASE",
                            help="The release that stays (OFFLOAD_RELEASE, or the git commit, of the new servers).")
        retire.add_argument("--role", help="Only servers of this role (web, async or a profile).")
        command("release", "Apply migrations once, under a lock (the deploy's release step).")
        command("health", "Exit 0 if an async server on this host is running and heartbeating, else 1.")
        status = command("status", "Queues by priority band, servers and recent failures.")
        status.add_argument("--backend", default="default", help=backend_help)
        status.add_argument("--watch", type=float, nargs="?", const=2.0, metavar="SECONDS",
                            help="Refresh every SECONDS (default 2) until Ctrl-C.")
        for cmd in sub.choices.values():
            _accept_django_options(cmd)

    def handle(self, *args, action, **options):
        """Check the databases the command needs, then run it. A database error on the
        way is explained in one line too (say it went away during ``status --watch``)."""
        from django.db import Error

        # A bad argument is reported before a database problem.
        if action == "prune":
            self._age(options["older_than"], "--older-than")
        if action in ("pause", "resume"):
            self._declared(options["backend"], options["queue"])
        needs, any_one = self._databases(action, options)
        if action not in ("worker", "run"):  # those check at start, however started
            problems = [p for p in (dbcheck.problem(alias, migrations=m) for alias, m in needs) if p]
            if problems and (len(problems) == len(needs) or not any_one):
                raise CommandError(problems[0])
        try:
            return getattr(self, f"handle_{action}")(**options)
        except Error as exc:
            from django.db import connections

            for alias, migrations in needs:
                if connections[alias].in_atomic_block:
                    break  # called inside a transaction (call_command): the error as it is
                if problem := dbcheck.problem(alias, migrations=migrations):
                    raise CommandError(problem) from exc
            raise

    def _databases(self, action, options):
        """``([(alias, migrations)], any_one)``: the databases ``action`` uses; with
        ``any_one``, the registry's: one that cannot be read is skipped (and logged) as
        long as another can."""
        from offload import registry

        if action in ("servers", "retire", "health"):
            return [(db, dbcheck.OFFLOAD) for db in registry.databases()], True
        if action == "release":
            return [("default", None)], False  # migrate creates what is missing
        if action == "run":
            return [(registry.home(), dbcheck.ALL)], False
        migrations = dbcheck.ALL if action == "worker" else dbcheck.OFFLOAD
        return [(self._backend(options["backend"]).opts.DATABASE, migrations)], False

    def _backend(self, alias):
        from offload.backend import OffloadBackend

        try:
            backend = task_backends[alias]
        except InvalidTaskBackend as exc:
            raise CommandError(f"{exc}. Configured backends: {', '.join(task_backends.settings)}.")
        if not isinstance(backend, OffloadBackend):
            raise CommandError(
                f"TASKS[{alias!r}] uses {type(backend).__name__}; the Offload worker runs "
                "tasks of an offload.backend.OffloadBackend."
            )
        return backend

    def _duration(self, value, flag):
        try:
            return parse_duration(value, name=flag)
        except ValueError as exc:
            raise CommandError(str(exc))

    def _age(self, value, flag):
        """Seconds from an age with its unit: ``prune --older-than 7`` once deleted what
        finished more than 7 *seconds* ago, so a bare number is refused."""
        forms = "7d (days), 12h (hours), 30m (minutes) or 90s (seconds)"
        text = str(value).strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            raise CommandError(f"{flag} {text} has no unit: write {forms}.")
        try:
            return parse_duration(text, name=flag)
        except ValueError:
            raise CommandError(f"{flag} {value!r} is not a duration: write {forms}.") from None

    def _reserve(self, value, threads):
        from offload.roles import parse_reserve

        if not value:
            return None
        try:
            return parse_reserve(value, threads)
        except ValueError as exc:
            raise CommandError(str(exc))

    def _limits(self, values):
        limits = {}
        for value in values:
            queue, _, n = value.partition("=")
            if not queue or not n.isdigit() or int(n) < 1:
                raise CommandError(f"--queue-limit {value!r}: use QUEUE=N with N >= 1, e.g. crm=2.")
            limits[queue] = int(n)
        return limits

    def handle_worker(self, *, backend, queues, processes, threads, grace, burst, reserve,
                      queue_limit, role, reload, **_):
        from offload.worker.supervisor import Supervisor

        tasks_backend = self._backend(backend)
        chosen = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
        unknown = set(chosen or ()) - tasks_backend.queues
        if unknown and tasks_backend.queues:
            raise CommandError(
                f"--queues names {', '.join(sorted(unknown))}, which TASKS[{backend!r}]['QUEUES'] "
                f"does not declare ({', '.join(sorted(tasks_backend.queues))})."
            )
        if threads < 1 or (processes is not None and processes < 1):
            raise CommandError("--processes and --threads must be at least 1.")
        options = dict(grace=self._duration(grace, "--grace"), reserve=self._reserve(reserve, threads),
                       queue_limits=self._limits(queue_limit))
        self._logging()
        reloading = self._reloading(reload, burst)
        if reloading and not devloop.is_child():  # this process only restarts the one that serves
            sys.exit(devloop.restart_loop(self._why(reload)))
        supervisor = Supervisor(backend, queues=chosen, processes=processes, threads=threads,
                                burst=burst, role=role, **options)
        code = devloop.serve(supervisor) if reloading else supervisor.run()
        if code:
            sys.exit(code)

    def handle_prune(self, *, backend, older_than, **_):
        from datetime import timedelta

        from offload.store.base import now

        tasks_backend = self._backend(backend)
        before = now() - timedelta(seconds=self._age(older_than, "--older-than"))
        deleted = tasks_backend.store.prune(backend=backend, before=before)
        self.stdout.write(f"Deleted {deleted} finished task(s) older than {older_than.strip()} "
                          f"(finished before {before:%Y-%m-%d %H:%M:%S} UTC).")

    def _declared(self, backend, queue):
        """The backend, if it declares ``queue`` (or takes any queue)."""
        from offload.conf import did_you_mean

        tasks_backend = self._backend(backend)
        if tasks_backend.queues and queue not in tasks_backend.queues:
            raise CommandError(f"{queue!r} is not one of TASKS[{backend!r}]['QUEUES']: "
                               f"{', '.join(sorted(tasks_backend.queues))}.{did_you_mean(queue, tasks_backend.queues)}")
        return tasks_backend

    def _set_paused(self, backend, queue, paused):
        from offload.store.base import now

        tasks_backend = self._declared(backend, queue)
        tasks_backend.store.pause(backend=backend, queue=queue, paused=paused, now=now())
        self.stdout.write(f"Queue {queue!r} {'paused' if paused else 'resumed'}: "
                          f"{'no server starts its tasks; they stay queued' if paused else 'servers take its tasks again'}.")

    def handle_pause(self, *, backend, queue, **_):
        self._set_paused(backend, queue, True)

    def handle_resume(self, *, backend, queue, **_):
        self._set_paused(backend, queue, False)

    def handle_queues(self, *, backend, **_):
        from offload.dashboard import queries

        tasks_backend = self._backend(backend)
        counts = {}
        for row in queries.summary(backend):  # per band; a queue's rows add up
            ready, running = counts.get(row["queue"], (0, 0))
            counts[row["queue"]] = (ready + row["ready"] + row["scheduled"], running + row["running"])
        paused = queries.paused_queues(backend)
        limits = tasks_backend.opts.QUEUE_LIMITS
        self.stdout.write(f"{'queue':<20}{'ready':>8}{'running':>9}  state    cluster limit")
        for queue in sorted(set(tasks_backend.queues) | set(counts) | paused):
            ready, running = counts.get(queue, (0, 0))
            state = "paused" if queue in paused else "active"
            self.stdout.write(f"{queue:<20}{ready:>8}{running:>9}  {state:<8} "
                              f"{limits.get(queue, '-')}")

    def handle_run(self, *, role, addr, reload, **_):
        """Start what OFFLOAD_ROLE says: gunicorn (web), the async server, or both (all).
        Under ``--reload`` (DEBUG's default) a code change restarts all of it, web included."""
        from offload import roles

        try:
            kind, profile = roles.resolve(role)
        except ValueError as exc:
            raise CommandError(str(exc))
        if kind == roles.WEB and reload:
            raise CommandError("--reload: the web role runs gunicorn, which offload run does "
                               "not restart; in development use manage.py runserver (it "
                               "reloads) or OFFLOAD_ROLE=all.")
        reloading = kind != roles.WEB and self._reloading(reload)
        if addr:
            os.environ["OFFLOAD_WEB_BIND"] = addr
        os.environ.setdefault("OFFLOAD_ROLE", role or roles.role_name())
        if reloading and not devloop.is_child():  # this process only restarts the one that serves
            self._logging()
            sys.exit(devloop.restart_loop(self._why(reload)))
        web = None
        if kind in (roles.WEB, roles.ALL):
            web = self._gunicorn(exec_=kind == roles.WEB)
            self.stdout.write(f"Offload: web on http://{os.environ.get('OFFLOAD_WEB_BIND', '127.0.0.1:8000')}/"
                              + (" and the async server; Ctrl-C stops both." if web else ""))
        from offload.worker.supervisor import Supervisor

        self._logging()
        try:
            supervisor = Supervisor(profile.backend, queues=profile.queues or None,
                                    processes=profile.processes, threads=profile.threads,
                                    grace=profile.grace, reserve=profile.reserve,
                                    queue_limits=profile.queue_limits, role=profile.name,
                                    companions=[web] if web else [])
            code = devloop.serve(supervisor) if reloading else supervisor.run()
        finally:
            if web is not None and web.poll() is None:  # never leave gunicorn orphaned
                web.terminate()
                try:
                    web.wait(float(os.environ["OFFLOAD_WEB_GRACE"]) + 5)
                except subprocess.TimeoutExpired:
                    web.kill()
                    web.wait()
        if code:
            sys.exit(code)

    def _gunicorn(self, exec_):
        """Start gunicorn on the project's WSGI application, with the role's probes and
        static files (``offload.web``); exec it for the web role."""
        from django.conf import settings

        argv = [sys.executable, "-m", "gunicorn", "-c", "python:offload.gunicorn_conf",
                "offload.web:application"]
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings.SETTINGS_MODULE)
        # The web role's drain budget, declared once in settings (see deploy/render.py).
        os.environ.setdefault("OFFLOAD_WEB_GRACE", str(getattr(settings, "OFFLOAD_WEB_GRACE", 20)))
        if exec_:
            sys.stdout.flush()
            os.execv(sys.executable, argv)  # PID 1 in a container gets SIGTERM directly
        return subprocess.Popen(argv)

    def _logging(self):
        """One format for Offload's and Django's task lines where the project's LOGGING
        does not configure them (see offload.logs); worker processes do the same."""
        from offload.logs import configure

        configure()

    def _reloading(self, reload, burst=False):
        """--reload / --noreload, else on when settings.DEBUG is True (not with --burst)."""
        from django.conf import settings

        if reload and burst:
            raise CommandError("--reload and --burst: --burst exits once the queue is empty, "
                               "--reload keeps restarting the server; drop one of them.")
        return settings.DEBUG and not burst if reload is None else reload

    def _why(self, reload):
        return " (on because settings.DEBUG is True)" if reload is None else ""

    def handle_servers(self, *, all, **_):
        from offload.dashboard import queries

        self.stdout.write(f"{'server':<32}{'role':<12}{'release':<14}{'state':<10}{'heartbeat':>10}")
        for s in queries.servers(include_gone=all):
            self.stdout.write(f"{s['id']:<32}{s['role']:<12}{s['release']:<14}"
                              f"{s['state']:<10}{s['heartbeat_age_s']:>9.0f}s")

    def handle_retire(self, *, keep_release, role, **_):
        from offload import registry

        ids = registry.retire(keep_release=keep_release, role=role)
        self.stdout.write(f"Retiring {len(ids)} server(s) not on release {keep_release!r}"
                          + (f": {', '.join(ids)}" if ids else "") + ". They stop claiming now, "
                          "finish their in-flight tasks and exit.")

    def handle_release(self, **_):
        """migrate, once: concurrent release steps wait for the lock, then find nothing to do."""
        from django.core.management import call_command
        from django.db import connection

        def waiting():
            self.stdout.write("Release step: waiting for the migration lock "
                              "(another release step holds it)")
            self.stdout.flush()

        with _migration_lock(connection, on_wait=waiting):
            call_command("migrate", interactive=False, verbosity=1, stdout=self.stdout)
        self.stdout.write("Release step done: every migration is applied.")

    def handle_status(self, *, backend, watch, **_):
        import time

        from rich.console import Console
        from rich.live import Live

        self._backend(backend)
        console = Console(file=self.stdout, width=120)
        if not watch:
            console.print(_status_view(backend))
            return
        try:
            with Live(_status_view(backend), console=console, refresh_per_second=4) as live:
                while True:
                    time.sleep(watch)
                    live.update(_status_view(backend))
        except KeyboardInterrupt:
            pass

    def handle_health(self, **_):
        """Healthy: an async server on this host heartbeats, running or draining (a
        draining server with a long grace is still doing its work)."""
        import socket
        from datetime import timedelta

        from offload import registry
        from offload.store.base import now

        fresh, host = now() - timedelta(seconds=30), socket.gethostname()
        server = next((s for s in registry.listing() if s.host == host and s.role != "web"
                       and s.state in ("running", "retiring") and s.heartbeat_at >= fresh), None)
        if server is None:
            self.stderr.write(f"unhealthy: no running async server on {host} "
                              "has sent a heartbeat in the last 30 s")
            sys.exit(1)
        state = "" if server.state == "running" else ", draining"
        self.stdout.write(f"healthy: {server.id} ({server.role}, release {server.release}{state})")


#: Django's own options (``--settings`` ...) go before the command; these copies let them
#: come after it too (``offload worker --settings mysite.settings``). SUPPRESS: a copy
#: not given leaves the value parsed before the command alone.
_DJANGO_OPTIONS = ((("-v", "--verbosity"), {"type": int, "choices": [0, 1, 2, 3]}),
                   (("--settings",), {}), (("--pythonpath",), {}),
                   (("--traceback",), {"action": "store_true"}),
                   (("--no-color",), {"action": "store_true"}),
                   (("--force-color",), {"action": "store_true"}),
                   (("--skip-checks",), {"action": "store_true"}))


def _reload_flags(parser, note):
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--reload", action="store_true", default=None,
                       help="Restart when code changes, with Django's autoreloader: the server "
                            "drains as on SIGTERM, then starts with the new code (default: on "
                            f"when settings.DEBUG is True, like runserver{note}).")
    group.add_argument("--noreload", dest="reload", action="store_false", default=None,
                       help="Never restart on code changes.")


def _accept_django_options(parser):
    for flags, kwargs in _DJANGO_OPTIONS:
        parser.add_argument(*flags, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def _status_view(backend):
    from rich.console import Group
    from rich.table import Table

    from offload.dashboard import queries
    from offload.templatetags.offload_format import format_duration

    queues = Table(title=f"Queues ({backend})", expand=False)
    for col in ("queue", "band", "ready", "scheduled", "running", "failed", "oldest wait", "state"):
        queues.add_column(col, justify="left" if col in ("queue", "band", "state") else "right")
    for row in queries.summary(backend):
        wait = row["oldest_wait_s"]
        queues.add_row(row["queue"], row["band"], str(row["ready"]), str(row["scheduled"]),
                       str(row["running"]), str(row["failed"]),
                       "-" if wait is None else format_duration(wait),
                       "[yellow]paused[/]" if row["paused"] else "active")
    servers = Table(title="Servers")
    for col in ("server", "role", "release", "state", "heartbeat"):
        servers.add_column(col)
    for s in queries.servers():
        servers.add_row(s["id"], s["role"], s["release"], s["state"], f"{format_duration(s['heartbeat_age_s'])} ago")
    failed = Table(title="Recent failures")
    for col in ("id", "task", "finished", "error"):
        failed.add_column(col)
    for row in queries.failures(backend, limit=5):  # never reads the large fields whole
        last = row.last_error["exception_class_path"] if row.last_error else ""
        failed.add_row(str(row.pk), row.task_path, f"{row.finished_at:%H:%M:%S}", last)
    return Group(queues, servers, failed)


class _migration_lock:
    """PostgreSQL: a session advisory lock. SQLite: an exclusive lock on a file beside
    the database (one machine shares an SQLite file). Tried without waiting first:
    ``on_wait()`` is called only when another process holds it."""

    KEY = 0x0FF10AD  # any constant; the same in every release

    def __init__(self, connection, on_wait=lambda: None):
        self.connection = connection
        self.on_wait = on_wait
        self.file = None

    def __enter__(self):
        if not self._take(block=False):
            self.on_wait()
            self._take(block=True)
        return self

    def _take(self, block):
        if self.connection.vendor == "postgresql":
            with self.connection.cursor() as cursor:
                if block:
                    cursor.execute("SELECT pg_advisory_lock(%s)", [self.KEY])
                    return True
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.KEY])
                return cursor.fetchone()[0]
        import fcntl

        if self.file is None:
            self.file = open(f"{self.connection.settings_dict['NAME']}.release-lock", "w")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True

    def __exit__(self, *exc):
        if self.file is not None:
            self.file.close()  # releases the flock
        else:
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [self.KEY])
