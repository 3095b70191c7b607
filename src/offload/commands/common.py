"""What several subcommands share: the Offload backend named by ``--backend`` and the
``--reload`` decision. Example::

    tasks_backend = backend("default")     # CommandError if it is not an OffloadBackend
    if reloading(options["reload"], burst=False) and not devloop.is_child(): ...
"""

from django.core.management.base import CommandError
from django.tasks import task_backends
from django.tasks.exceptions import InvalidTaskBackend


def backend(alias):
    """The ``OffloadBackend`` of TASKS[alias]; CommandError for another alias or class."""
    from offload.backend import OffloadBackend

    try:
        tasks_backend = task_backends[alias]
    except InvalidTaskBackend as exc:
        raise CommandError(f"{exc}. Configured backends: {', '.join(task_backends.settings)}.") from None
    if not isinstance(tasks_backend, OffloadBackend):
        raise CommandError(
            f"TASKS[{alias!r}] uses {type(tasks_backend).__name__}; the Offload worker runs "
            "tasks of an offload.backend.OffloadBackend."
        )
    return tasks_backend


def reloading(reload, burst=False):
    """--reload / --noreload, else on when settings.DEBUG is True (not with --burst)."""
    from django.conf import settings

    if reload and burst:
        raise CommandError("--reload and --burst: --burst exits once the queue is empty, "
                           "--reload keeps restarting the server; drop one of them.")
    return settings.DEBUG and not burst if reload is None else reload


def why(reload):
    """Why it reloads, for the reloader's first line: said only when DEBUG chose it."""
    return " (on because settings.DEBUG is True)" if reload is None else ""
