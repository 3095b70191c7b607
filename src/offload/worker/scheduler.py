"""The Scheduler: enqueues periodic tasks, exactly once per occurrence however many
async servers run.

Every supervisor runs one, at every maintenance tick (about once a second). Its
schedules are those of ``OPTIONS["PERIODIC"]`` and the enabled database schedules
(``offload_schedule`` rows with source "database", made and edited in the admin),
read again at every tick, so an edit takes effect on every server within one tick.
For each schedule it keeps the next occurrence in memory (recomputed when the
definition changes) and touches the task table only when one is due: in one
transaction it moves the schedule's ``last_run_at`` forward with a compare-and-set
(``UPDATE … WHERE last_run_at < due``) and, only if that updated the row, enqueues
the task. A second server racing for the same occurrence waits on the row lock, then
finds the condition false and enqueues nothing. Example::

    Scheduler(backend).tick(now())
"""

import logging

from django.db import DatabaseError, InterfaceError, transaction

from offload.models import Schedule
from offload.results import import_task
from offload.scheduling.periodic import due, parse_schedules

logger = logging.getLogger("offload.server")


def task_for(schedule, backend):
    """The task ``schedule`` (a Periodic) enqueues on ``backend``: its own, with the
    schedule's priority and queue where it sets them."""
    changes = {k: v for k, v in (("priority", schedule.priority),
                                 ("queue_name", schedule.queue_name)) if v is not None}
    return import_task(schedule.task).using(backend=backend, **changes)


class Scheduler:
    def __init__(self, backend):
        self.backend = backend
        self.db = backend.opts.DATABASE
        self.settings = parse_schedules(backend.opts.PERIODIC)
        self.next_at = {}  # name -> when to look again
        self.versions = {}  # name -> the changed_at of the definition next_at is for
        self.reported = {}  # name -> the changed_at of a definition already logged as broken
        self.copied = False  # the settings' definitions copied to their rows (once)

    def rows(self):
        return Schedule.objects.using(self.db).filter(backend=self.backend.alias)

    def schedules(self):
        """The settings' schedules, then the enabled database schedules (one query); a
        database schedule that does not parse, or takes a settings schedule's name, is
        logged once per version and skipped."""
        found = list(self.settings)
        names = {s.name for s in self.settings}
        for row in self.rows().filter(source=Schedule.DATABASE, enabled=True):
            version = row.changed_at
            if self.versions.get(row.name, version) != version:
                self.next_at.pop(row.name, None)  # edited: its next occurrence changed
            self.versions[row.name] = version
            try:
                if row.name in names:
                    raise ValueError(f"schedule {row.name!r}: OPTIONS['PERIODIC'] declares a "
                                     "schedule of that name, which wins; rename this one.")
                found.append(row.periodic())
            except ValueError as exc:
                if self.reported.get(row.name, ...) != version:
                    self.reported[row.name] = version
                    logger.error("%s; skipped until it is edited", exc)
        enabled = {s.name for s in found}
        for name in [n for n in self.next_at if n not in enabled]:
            del self.next_at[name]  # disabled or deleted: looked at afresh if it comes back
        return found

    def tick(self, now):
        """Enqueue what is due. A schedule that cannot be enqueued (its task no longer
        imports, its queue is not declared) is logged once per occurrence and skipped;
        the others still run. Database errors propagate: the supervisor retries later."""
        if not self.copied:
            self._copy_settings()
        for schedule in self.schedules():
            if schedule.name in self.next_at and now < self.next_at[schedule.name]:
                continue
            try:
                self._check(schedule, now)
            except (DatabaseError, InterfaceError):
                raise
            except Exception:
                logger.exception("periodic %s: could not enqueue %s; trying again at its next "
                                 "occurrence", schedule.name, schedule.task)
            self.next_at[schedule.name] = schedule.following(now)

    def _copy_settings(self):
        """Copy each settings schedule's definition to its row, for the admin and the
        dashboard to show (a row not made yet gets it when _check makes it)."""
        for schedule in self.settings:
            self.rows().filter(name=schedule.name, source=Schedule.SETTINGS).update(
                **Schedule.definition(schedule))
        self.copied = True

    def _check(self, schedule, now):
        rows = self.rows().filter(name=schedule.name)
        last = rows.values_list("last_run_at", flat=True).first()
        if last is None:
            # A new schedule starts with its next occurrence; ignore_conflicts lets the
            # servers that start together all try.
            Schedule.objects.using(self.db).bulk_create(
                [Schedule(backend=self.backend.alias, name=schedule.name,
                          last_run_at=schedule.latest(now), **Schedule.definition(schedule))],
                ignore_conflicts=True)
            return
        occurrence = due(schedule, last, now)
        if occurrence is None:
            latest = schedule.latest(now)
            if latest > last:  # a skipped (too old) occurrence: move past it
                rows.filter(last_run_at__lt=latest).update(last_run_at=latest)
            return
        task = task_for(schedule, self.backend.alias)
        with transaction.atomic(using=self.db):
            if rows.filter(last_run_at__lt=occurrence).update(last_run_at=occurrence):
                result = task.enqueue(*schedule.args, **schedule.kwargs)
                logger.info("periodic %s: enqueued %s for %s (task id=%s)", schedule.name,
                            schedule.task, occurrence.isoformat(), result.id)
