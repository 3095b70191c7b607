"""A worker process's own entry point: a fresh interpreter that never runs the user's
main module.

multiprocessing's "spawn" re-imports the parent's ``__main__`` in every child, so a
``manage.py`` without an ``if __name__ == "__main__":`` guard ran the whole command again
in each worker. The supervisor instead starts ``python -c <BOOTSTRAP>`` with the
parent's ``sys.path`` and a JSON spec in ``OFFLOAD_WORKER_SPEC``; the child imports
Django and this module, builds its ``Loop`` and writes one byte to an inherited pipe:
*ready*. A process that exits before that failed to start (bad settings, a bad flag);
one that exits after it was running (a kill, a crash, a timed-out task). Example::

    proc, ready_fd = spawn({"alias": "default", "queues": [], "threads": 4, ...})
"""

import json
import logging
import os
import signal
import subprocess
import sys

#: What ``python -c`` runs: ignore Ctrl-C first (the supervisor decides), then the
#: parent's import path, then this module.
BOOTSTRAP = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "import json, os, sys; sys.path[:] = json.loads(os.environ.pop('OFFLOAD_WORKER_PATH'))\n"
    "from offload.worker.child import main; main()\n"
)


def spawn(spec):
    """Start a worker process for ``spec``; return ``(Popen, fd)``: ``fd`` reads ``b"1"``
    once the worker is ready, then end-of-file when it exits."""
    read, write = os.pipe()
    env = dict(os.environ, OFFLOAD_WORKER_SPEC=json.dumps({**spec, "ready_fd": write}),
               OFFLOAD_WORKER_PATH=json.dumps(sys.path))
    try:
        proc = subprocess.Popen(
            [sys.executable, *subprocess._args_from_interpreter_flags(), "-c", BOOTSTRAP],
            env=env, pass_fds=[write], close_fds=True)
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    os.set_blocking(read, False)
    return proc, read


def _name_connections(worker_id):
    """Name this process's PostgreSQL sessions after the worker, so the supervisor can
    end them if the process dies mid-statement (see PostgresStore.end_sessions): the
    ``application_name`` connection parameter of every PostgreSQL alias, sent when a
    connection opens (no statement of its own, and a pooler such as PgBouncer applies it
    to whichever server connection serves this client)."""
    from django.db import connections

    from offload.store.postgres import application_name

    for alias in connections.settings:
        settings_dict = connections.settings[alias]
        if settings_dict["ENGINE"].endswith("postgresql"):
            settings_dict.setdefault("OPTIONS", {})["application_name"] = application_name(worker_id)


def main():
    spec = json.loads(os.environ.pop("OFFLOAD_WORKER_SPEC"))
    ready_fd = spec.pop("ready_fd")
    os.set_inheritable(ready_fd, False)  # not into a task's own subprocesses
    import django

    django.setup()
    from django.tasks import task_backends

    from offload.logs import configure
    from offload.worker.loop import Loop

    configure()  # the server process's log format (see offload.logs)

    if task_backends[spec["alias"]].store.engine == "postgres":
        _name_connections(spec["worker_id"])
    reserve = spec.pop("reserve")
    loop = Loop(task_backends[spec.pop("alias")], reserve=reserve and tuple(reserve), **spec)
    signal.signal(signal.SIGTERM, lambda *_: loop.request_stop("drain"))
    signal.signal(signal.SIGUSR1, lambda *_: loop.request_stop("now"))
    os.write(ready_fd, b"1")  # the fd stays open until exit: its end-of-file is the exit
    code = loop.run()
    logging.shutdown()
    os._exit(code)  # task threads may still be stuck in user code: do not join them
