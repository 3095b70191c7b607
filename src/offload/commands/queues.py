"""``offload pause QUEUE``, ``offload resume QUEUE`` and ``offload queues`` (the listing:
ready, running, paused or active, cluster limit). A queue the backend does not declare
is refused, with a suggestion, before the database is looked at. Example::

    manage.py offload pause emails     # Queue 'emails' paused: no server starts its tasks; ...
    manage.py offload queues
"""

from django.core.management.base import CommandError

from offload.commands.common import backend as offload_backend


def declared(backend, queue):
    """The backend, if it declares ``queue`` (or takes any queue)."""
    from offload.suggest import did_you_mean

    tasks_backend = offload_backend(backend)
    if tasks_backend.queues and queue not in tasks_backend.queues:
        raise CommandError(f"{queue!r} is not one of TASKS[{backend!r}]['QUEUES']: "
                           f"{', '.join(sorted(tasks_backend.queues))}.{did_you_mean(queue, tasks_backend.queues)}")
    return tasks_backend


def _set_paused(command, backend, queue, paused):
    from offload.clock import now

    tasks_backend = declared(backend, queue)
    tasks_backend.store.pause(backend=backend, queue=queue, paused=paused, now=now())
    command.stdout.write(f"Queue {queue!r} {'paused' if paused else 'resumed'}: "
                         + ("no server starts its tasks; they stay queued." if paused
                            else "servers take its tasks again."))


def pause(command, *, backend, queue, **_):
    _set_paused(command, backend, queue, True)


def resume(command, *, backend, queue, **_):
    _set_paused(command, backend, queue, False)


def listing(command, *, backend, **_):
    from offload.dashboard import queries

    tasks_backend = offload_backend(backend)
    counts = {}
    for row in queries.summary(backend):  # per band; a queue's rows add up
        ready, running = counts.get(row["queue"], (0, 0))
        counts[row["queue"]] = (ready + row["ready"] + row["scheduled"], running + row["running"])
    paused = queries.paused_queues(backend)
    limits = tasks_backend.opts.QUEUE_LIMITS
    command.stdout.write(f"{'queue':<20}{'ready':>8}{'running':>9}  state    cluster limit")
    for queue in sorted(set(tasks_backend.queues) | set(counts) | paused):
        ready, running = counts.get(queue, (0, 0))
        state = "paused" if queue in paused else "active"
        command.stdout.write(f"{queue:<20}{ready:>8}{running:>9}  {state:<8} "
                             f"{limits.get(queue, '-')}")
