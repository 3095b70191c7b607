"""Periodic schedules: parsing ``OPTIONS["PERIODIC"]`` and cron arithmetic (croniter).

Pure functions; the Scheduler (``worker/scheduler.py``) does the enqueueing. Example::

    [s] = parse_schedules({"nightly": {"task": "app.tasks.report", "cron": "0 2 * * *",
                                       "timezone": "Europe/London"}})
    due(s, last_run_at, now)   # the occurrence to enqueue now, or None
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, croniter
from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY

from offload.suggest import did_you_mean

#: With missed="skip", an occurrence older than this when noticed is not enqueued.
SKIP_AFTER = timedelta(minutes=1)
_KEYS = {"task", "cron", "timezone", "args", "kwargs", "priority", "queue_name", "missed"}


@dataclass(frozen=True)
class Periodic:
    name: str
    task: str
    cron: str
    timezone: str = "UTC"
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    priority: int | None = None
    queue_name: str | None = None
    #: "once": after downtime, enqueue the latest missed occurrence once.
    #: "skip": enqueue only occurrences noticed within a minute; drop older ones.
    missed: str = "once"

    def latest(self, now):
        """The latest occurrence at or before ``now`` (aware, UTC)."""
        local = now.astimezone(ZoneInfo(self.timezone))
        return croniter(self.cron, local + timedelta(microseconds=1)).get_prev(datetime).astimezone(UTC)

    def following(self, now):
        """The first occurrence after ``now`` (aware, UTC)."""
        local = now.astimezone(ZoneInfo(self.timezone))
        return croniter(self.cron, local).get_next(datetime).astimezone(UTC)


def due(schedule, last_run_at, now):
    """The occurrence to enqueue now given the last one enqueued, or None."""
    latest = schedule.latest(now)
    if latest <= last_run_at:
        return None
    if schedule.missed == "skip" and now - latest > SKIP_AFTER:
        return None
    return latest


def parse_schedules(raw):
    """Validate ``OPTIONS["PERIODIC"]``; raise ValueError naming the problem and the fix."""
    return [parse_schedule(name, spec) for name, spec in (raw or {}).items()]


def parse_schedule(name, spec, where=None):
    """One schedule, ``spec`` as in ``OPTIONS["PERIODIC"]``; ValueError names the problem
    (``where``: how to name the schedule in it)."""
    where = where or f"PERIODIC[{name!r}]"
    if not isinstance(spec, dict) or "task" not in spec or "cron" not in spec:
        raise ValueError(f"{where} needs at least 'task' (a dotted path) and 'cron' "
                         "(for example '0 2 * * *').")
    for key in sorted(set(spec) - _KEYS):
        raise ValueError(f"{where} has an unknown key {key!r}.{did_you_mean(key, _KEYS)} "
                         f"Allowed: {', '.join(sorted(_KEYS))}.")
    priority = spec.get("priority")
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)
                                 or not TASK_MIN_PRIORITY <= priority <= TASK_MAX_PRIORITY):
        raise ValueError(f"{where}: priority {priority!r} is not a whole number from "
                         f"{TASK_MIN_PRIORITY} to {TASK_MAX_PRIORITY} (higher runs first).")
    queue = spec.get("queue_name")
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise ValueError(f"{where}: queue_name {queue!r} is not a queue name (a non-empty string).")
    if not isinstance(spec.get("args", []), (list, tuple)):
        raise ValueError(f"{where}: args must be a list, for example [42].")
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"{where}: kwargs must be a dict with str keys, for example {{'days': 7}}.")
    if not croniter.is_valid(spec["cron"]):
        raise ValueError(f"{where}: {spec['cron']!r} is not a cron expression "
                         "(five fields: minute hour day month weekday).")
    try:
        ZoneInfo(spec.get("timezone", "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{where}: unknown timezone {spec.get('timezone')!r}; use an IANA "
                         "name such as 'Europe/Paris'.") from None
    if spec.get("missed", "once") not in ("once", "skip"):
        raise ValueError(f"{where}: missed must be 'once' or 'skip'.")
    return Periodic(name=name, **spec)


__all__ = ["CroniterBadCronError", "Periodic", "due", "parse_schedule", "parse_schedules"]
