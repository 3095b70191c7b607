"""``offload cancel ID...``: cancel tasks (``offload.cancel``): one that has not started
will not; a running one is asked to stop. Example::

    manage.py offload cancel 812 813 --reason "customer withdrew"
    # 812: cancelled (it had not started)
    # 813: asked to stop (running); its worker fails it with Cancelled
"""

from django.core.management.base import CommandError
from django.tasks.exceptions import TaskResultDoesNotExist

from offload.cancellation import CANCELLED, STOPPING, cancel
from offload.commands.common import backend as offload_backend

SAID = {CANCELLED: "cancelled (it had not started)",
        STOPPING: "asked to stop (running); its worker fails it with Cancelled",
        None: "already finished; left alone"}


def handle(command, *, backend, ids, reason=None, **_):
    offload_backend(backend)
    missing = []
    for result_id in ids:
        try:
            done = cancel(result_id, reason=reason, by="manage.py offload cancel", backend=backend)
        except TaskResultDoesNotExist:
            missing.append(result_id)
            continue
        command.stdout.write(f"{result_id}: {SAID.get(done, SAID[None])}")
    if missing:
        raise CommandError(f"no task {', '.join(missing)} in backend {backend!r}")
