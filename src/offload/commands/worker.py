"""``offload worker``: the async server (a supervisor and its worker processes) from
the flags, validated as an ``OFFLOAD_PROFILES`` entry is (``offload.spec.WorkerSpec``).
Example::

    manage.py offload worker --queues emails,crm --threads 8 --reserve 2:50 --queue-limit crm=2
"""

import sys

from django.core.management.base import CommandError

from offload.commands.common import backend as offload_backend
from offload.commands.common import reloading, why
from offload.spec import WorkerSpec


def handle(command, *, backend, queues, processes, threads, grace, burst, reserve,
           queue_limit, role, reload, async_concurrency=None, **_):
    from offload.logs import configure as configure_logging
    from offload.worker import reload as devloop
    from offload.worker.supervisor import Supervisor

    tasks_backend = offload_backend(backend)
    try:
        spec = WorkerSpec.from_flags(backend=backend, queues=queues, processes=processes,
                                     threads=threads, async_concurrency=async_concurrency,
                                     grace=grace, reserve=reserve,
                                     queue_limit=queue_limit, role=role)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    unknown = set(spec.queues) - tasks_backend.queues
    if unknown and tasks_backend.queues:
        raise CommandError(
            f"--queues names {', '.join(sorted(unknown))}, which TASKS[{backend!r}]['QUEUES'] "
            f"does not declare ({', '.join(sorted(tasks_backend.queues))})."
        )
    configure_logging()
    serving = reloading(reload, burst)
    if serving and not devloop.is_child():  # this process only restarts the one that serves
        sys.exit(devloop.restart_loop(why(reload)))
    supervisor = Supervisor(**spec.supervisor_arguments(), burst=burst)
    code = devloop.serve(supervisor) if serving else supervisor.run()
    if code:
        sys.exit(code)
