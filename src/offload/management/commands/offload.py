"""``manage.py offload <command>`` (or the ``offload`` console script): the argument
parser, and a dispatch to the subcommand's module in ``offload.commands``. ``offload
--help`` lists the commands, ``offload COMMAND --help`` their flags; docs/cli.md is
generated from this parser (``python -m offload.clidoc``). Example::

    manage.py offload worker [--queues a,b] [--processes N] [--threads N] [--grace 30s] [--burst]
    manage.py offload prune --older-than 7d
    manage.py offload run            # the web role and the async server together (local use)
    manage.py offload worker --reload  # restart on code changes (the default under DEBUG)

A database that does not answer, does not exist or is not migrated is one line on
stderr naming the fix (``offload.dbcheck``), for every command, and exit status 1.
"""

import argparse

from django.core.management.base import BaseCommand, CommandError

from offload import dbcheck
from offload.commands import cancel, common, health, prune, queues, release, run, servers, status, worker

#: COMMAND -> the function that runs it: ``function(command, **options)``.
HANDLERS = {"worker": worker.handle, "pause": queues.pause, "resume": queues.resume,
            "queues": queues.listing, "prune": prune.handle, "run": run.handle,
            "servers": servers.listing, "retire": servers.retire, "release": release.handle,
            "health": health.handle, "status": status.handle, "cancel": cancel.handle}


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
        worker.add_argument("--async-concurrency", type=int, default=None, metavar="N",
                            help="Coroutine (async def) tasks per process at once, on an event loop; "
                                 "0 runs them on the threads (default: 500)."),
        worker.add_argument("--grace", default="30s", metavar="DURATION",
                            help="Time to finish in-flight tasks on SIGTERM: 30s, 2m; a bare number is "
                                 "seconds (default: %(default)s).")
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

        cancel = command("cancel", "Cancel tasks: one not started will not run; a running one is "
                                   "asked to stop (failed with Cancelled).")
        cancel.add_argument("ids", nargs="+", metavar="ID", help="Task (result) ids.")
        cancel.add_argument("--reason", help="Why, recorded in the task's error.")
        cancel.add_argument("--backend", default="default", help=backend_help)

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
            prune.age(options["older_than"], "--older-than")
        if action in ("pause", "resume"):
            queues.declared(options["backend"], options["queue"])
        needs, any_one = self._databases(action, options)
        if action not in ("worker", "run"):  # those check at start, however started
            problems = [p for p in (dbcheck.problem(alias, migrations=m) for alias, m in needs) if p]
            if problems and (len(problems) == len(needs) or not any_one):
                raise CommandError(problems[0])
        try:
            return HANDLERS[action](self, **options)
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
        from offload.deployment import Deployment

        deployment = Deployment.current()
        if action in ("servers", "retire", "health"):
            return [(db, dbcheck.OFFLOAD) for db in deployment.databases], True
        if action == "release":
            return [("default", None)], False  # migrate creates what is missing
        if action == "run":
            return [(deployment.home, dbcheck.ALL)], False
        migrations = dbcheck.ALL if action == "worker" else dbcheck.OFFLOAD
        alias = common.backend(options["backend"]).alias
        return [(deployment.database(alias), migrations)], False


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
