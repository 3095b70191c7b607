"""``--reload``: restart the async server when code changes, with Django's autoreloader.

The command runs twice, as ``runserver`` does. The parent (``restart_loop``) starts
the same command line again as a child with Django's ``DJANGO_AUTORELOAD_ENV`` set, and
once more each time it exits with ``RESTART``. The child (``serve``) runs the supervisor
in its main thread while Django's reloader (``autoreload.get_reloader()``: StatReloader,
or Watchman if pywatchman is installed) watches the files of every imported module in
another. On a change the server drains exactly as on a first SIGTERM (it stops
claiming, in-flight tasks finish within ``--grace``, the rest is handed back, the
server is recorded as stopped); then the child exits with ``RESTART`` and a new one
starts with the new code. Example::

    if not is_child():
        sys.exit(restart_loop())     # the parent: no server, no database connection
    sys.exit(serve(Supervisor("default", processes=1)))

Why not ``autoreload.run_with_reloader`` itself: it runs the main function in a daemon
thread (the supervisor needs the main thread for its signal handlers), and a change or
a SIGTERM ends the process at once (``sys.exit`` in the reloader, a SIGKILL of the child
from the parent's ``subprocess.run``), which would skip the drain.

What is watched: the server process never runs tasks, so the child imports each
installed app's ``tasks`` module; with settings, the URLconf (the system checks load
it) and what they import, that is the project's code. A module that only the worker
processes import is not watched. A ``tasks`` module that fails to import is logged and
watched, and so is any file that breaks a restart: the parent then waits for the next
change instead of ending the loop. The parent passes SIGTERM on to the child and exits
with its status; a Ctrl-C reaches the child from the terminal itself.
"""

import logging
import os
import signal
import subprocess
import threading

from django.utils import autoreload
from django.utils.module_loading import autodiscover_modules

from offload.worker import signals

logger = logging.getLogger("offload.server")

#: The child's exit status that asks the parent for a new child: Django's own.
RESTART = 3


def is_child():
    """True in the process the reloading parent started (the one that serves)."""
    return os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true"


def restart_loop(why=""):
    """The parent: run this command line as a child until it exits 0 (or after a
    SIGTERM, passed on to the child, or a SIGINT); return its last status. ``why`` says
    in the first line why it reloads."""
    logger.info("--reload%s: a code change stops the server as on SIGTERM and starts it "
                "again; --noreload turns this off", why)
    env = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true"}
    args = autoreload.get_child_arguments()
    child, stopping = None, threading.Event()

    def on_signal(signum, frame):
        stopping.set()
        if signum == signal.SIGTERM and child is not None:
            child.send_signal(signal.SIGTERM)  # a no-op once it has exited

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            child = subprocess.Popen(args, env=env, close_fds=False)
            if stopping.is_set():  # the signal came while it was being started
                child.send_signal(signal.SIGTERM)
            code = child.wait()
            if stopping.is_set():
                return 0 if code == RESTART else code
            if code == RESTART:
                continue
            if code == 0:
                return 0
            logger.error("the server exited with status %s (the cause is above); it starts "
                         "again when a file changes. Ctrl-C quits.", code)
            signals.emit("reload-waiting")
            if not _watch(stopping):
                return code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _watch(stop):
    """Wait for a change of a watched file (True) or for ``stop`` (False)."""
    changed = threading.Event()

    def on_change(sender, file_path, **kwargs):
        if not changed.is_set():
            logger.info("%s changed: starting the server again", file_path)
            changed.set()
        return True  # handled: Django's reloader must not sys.exit() its thread

    autoreload.file_changed.connect(on_change, weak=False)
    reloader = _start_reloader()
    try:
        while not (changed.wait(0.2) or stop.is_set()):
            pass
    finally:
        reloader.stop()
        autoreload.file_changed.disconnect(on_change)
    return changed.is_set() and not stop.is_set()


def _start_reloader():
    reloader = autoreload.get_reloader()
    started = threading.Event()

    def on_started(sender, **kwargs):
        if sender is reloader:
            started.set()

    autoreload.autoreload_started.connect(on_started, weak=False)
    threading.Thread(target=reloader.run, args=(threading.main_thread(),),
                     name="offload-reloader", daemon=True).start()
    started.wait(10)  # its first look at the files follows at once
    autoreload.autoreload_started.disconnect(on_started)
    return reloader


def _import_task_modules():
    try:
        autoreload.check_errors(autodiscover_modules)("tasks")
    except Exception:  # its file is watched (check_errors): saving the fix restarts
        logger.exception("an app's tasks module does not import; its tasks fail until it "
                         "is fixed, and saving the fix restarts the server")


def serve(server):
    """The child: run ``server`` (a ``Supervisor``) in this thread while Django's
    reloader watches for changes; ``RESTART`` after a change, else the server's status."""
    os.environ.pop(autoreload.DJANGO_AUTORELOAD_ENV, None)  # not into workers and tasks
    changed = threading.Event()

    def on_change(sender, file_path, **kwargs):
        # A change while a stop is under way (SIGTERM, Ctrl-C, retired) does not restart.
        if not changed.is_set() and not server.signals:
            changed.set()
            logger.info("%s changed: stopping this server as on SIGTERM (in-flight tasks "
                        "finish), then starting it again with the new code", file_path)
            server.signals = 1  # what the first SIGTERM does
        return True  # handled: Django's reloader must not sys.exit() its thread

    _import_task_modules()
    autoreload.file_changed.connect(on_change, weak=False)
    reloader = _start_reloader()
    logger.info("watching for file changes with %s", type(reloader).__name__)
    try:
        code = server.run()
    finally:
        reloader.stop()
    return RESTART if changed.is_set() else code
