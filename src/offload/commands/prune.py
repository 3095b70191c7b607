"""``offload prune --older-than AGE``: delete the backend's finished tasks older than an
age, which needs its unit (a bare number is refused before the database is looked at).
Example::

    manage.py offload prune --older-than 7d
    # Deleted 12 finished task(s) older than 7d (finished before 2026-11-24 05:00:00 UTC).
"""

import re

from django.core.management.base import CommandError

from offload.commands.common import backend as offload_backend
from offload.conf import parse_duration


def age(value, flag):
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


def handle(command, *, backend, older_than, **_):
    from datetime import timedelta

    from offload.clock import now

    tasks_backend = offload_backend(backend)
    before = now() - timedelta(seconds=age(older_than, "--older-than"))
    deleted = tasks_backend.store.prune(backend=backend, before=before)
    command.stdout.write(f"Deleted {deleted} finished task(s) older than {older_than.strip()} "
                         f"(finished before {before:%Y-%m-%d %H:%M:%S} UTC).")
