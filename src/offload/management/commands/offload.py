"""``manage.py offload <command>``: thin argument parsing over Offload's parts.

    manage.py offload worker [--queues a,b] [--processes N] [--threads N] [--grace S] [--burst]
    manage.py offload prune --older-than 7d
    manage.py offload run            # the web role and the async server together (local use)
"""

import logging
import os
import signal
import subprocess
import sys

from django.core.management.base import BaseCommand, CommandError
from django.tasks import task_backends
from django.tasks.exceptions import InvalidTaskBackend

from offload.conf import parse_duration


class Command(BaseCommand):
    help = "Offload's async server and tools: worker, prune, run."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="COMMAND")

        worker = sub.add_parser("worker", help="Run the async server (supervisor + worker processes).")
        worker.add_argument("--backend", default="default", help="TASKS alias (default: %(default)s).")
        worker.add_argument("--queues", help="Comma-separated queues (default: every queue the backend declares).")
        worker.add_argument("--processes", type=int, default=None, help="Worker processes (default: CPU count).")
        worker.add_argument("--threads", type=int, default=4, help="Task threads per process (default: %(default)s).")
        worker.add_argument("--grace", default="30s", help="Time to finish in-flight tasks on SIGTERM (default: %(default)s).")
        worker.add_argument("--burst", action="store_true", help="Exit 0 once no runnable task is left.")

        prune = sub.add_parser("prune", help="Delete finished tasks older than a given age.")
        prune.add_argument("--backend", default="default")
        prune.add_argument("--older-than", required=True, help="Age such as 7d, 12h, 30m.")

        run = sub.add_parser("run", help="Start the web server and the async server together.")
        run.add_argument("--addr", default="127.0.0.1:8000")

    def handle(self, *args, action, **options):
        return getattr(self, f"handle_{action}")(**options)

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

    def handle_worker(self, *, backend, queues, processes, threads, grace, burst, **_):
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
        if not logging.getLogger("offload").handlers and not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        supervisor = Supervisor(backend, queues=chosen, processes=processes, threads=threads,
                                grace=self._duration(grace, "--grace"), burst=burst)
        code = supervisor.run()
        if code:
            sys.exit(code)

    def handle_prune(self, *, backend, older_than, **_):
        from datetime import timedelta

        from offload.store.base import now

        tasks_backend = self._backend(backend)
        seconds = self._duration(older_than, "--older-than")
        deleted = tasks_backend.store.prune(before=now() - timedelta(seconds=seconds))
        self.stdout.write(f"Deleted {deleted} finished task(s) older than {older_than}.")

    def handle_run(self, *, addr, **_):
        """Web (Django's development server) and the async server, stopped together."""
        manage = [sys.executable, sys.argv[0]]
        env = dict(os.environ)
        procs = [
            subprocess.Popen([*manage, "offload", "worker"], env=env),
            subprocess.Popen([*manage, "runserver", "--noreload", addr], env=env),
        ]
        self.stdout.write(f"Offload: web on http://{addr}/ and the async server are running. Ctrl-C stops both.")

        def stop(signum, frame):
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            while all(p.poll() is None for p in procs):
                signal.sigtimedwait([signal.SIGCHLD], 1.0)
        finally:
            stop(None, None)
            for p in procs:
                p.wait()
