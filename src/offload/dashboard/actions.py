"""Operator actions, shared by the dashboard and the admin: they call the same store
methods the rest of Offload uses, and write each one to the admin log.

    retry(user, TaskRow.objects.using("default").filter(pk__in=[7, 9]))

Rows are acted on in the database they were read from, by the backend they belong to;
any number of them (the store and the admin log work in chunks).
"""

import logging

from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.tasks import task_backends

from offload.clock import now
from offload.deployment import Deployment
from offload.models import Schedule, TaskRow
from offload.results import BLOCKED, decode_payload, resolve_task
from offload.store.base import CHUNK, chunks
from offload.worker.scheduler import task_for

logger = logging.getLogger("offload.dashboard")

#: The model permission each action needs, as in the admin (superusers have all).
PERMISSIONS = {"retry": "offload.change_taskrow", "cancel": "offload.change_taskrow",
               "re_enqueue": "offload.change_taskrow", "delete": "offload.delete_taskrow",
               "pause": "offload.change_queuestate",
               "resume": "offload.change_queuestate", "run_schedule": "offload.change_schedule",
               "enable_schedule": "offload.change_schedule", "disable_schedule": "offload.change_schedule"}


def may_view(user):
    """Whether ``user`` may see tasks (their arguments too): the view or the change
    permission of tasks, as in the admin."""
    return user.has_perm("offload.view_taskrow") or user.has_perm("offload.change_taskrow")


def _by_backend(pairs, db):
    """``{alias: [item]}`` from ``(alias, item)`` pairs read from database ``db``, for the
    Offload backends that keep their tasks there; a task id means nothing in another
    database, so other rows are left alone (and logged)."""
    deployment, groups = Deployment.current(), {}
    for alias, item in pairs:
        groups.setdefault(alias, []).append(item)
    for alias in list(groups):
        if alias not in deployment.backends or deployment.database(alias) != db:
            logger.warning("left %d task(s) of backend %r alone: they were read from database "
                           "%r, which is not where that Offload backend keeps its tasks",
                           len(groups.pop(alias)), alias, db)
    return groups


def _record(user, db, action, entries, flag=CHANGE):
    """Write ``[(pk, message)]`` of tasks in ``db`` to the admin log (``flag``: the
    admin's CHANGE or DELETION), and ``action`` with the ids to the logger."""
    content_type = ContentType.objects.get_for_model(TaskRow, for_concrete_model=False)
    for part in chunks(entries):
        messages = dict(part)
        rows = TaskRow.objects.using(db).filter(pk__in=messages).only("id", "task_path", "status")
        LogEntry.objects.bulk_create([
            LogEntry(user_id=user.pk, content_type_id=content_type.pk, object_id=str(row.pk),
                     object_repr=str(row)[:200], action_flag=flag, change_message=messages[row.pk])
            for row in rows], batch_size=CHUNK)
    if entries:
        more = f" and {len(entries) - 20} more" if len(entries) > 20 else ""
        logger.info("%s by %s: %s%s", action, user, ", ".join(str(pk) for pk, _ in entries[:20]), more)


def _ids_by_backend(rows, *statuses):
    """``(alias, backend, ids)`` of the ``rows`` with one of ``statuses``, per backend."""
    for alias, ids in _by_backend(rows.filter(status__in=statuses).values_list("backend", "pk"),
                                  rows.db).items():
        yield alias, task_backends[alias], ids


def retry(user, rows):
    """FAILED tasks run again now; returns how many."""
    done = 0
    for alias, b, ids in _ids_by_backend(rows, "FAILED"):
        retried = b.store.retry(backend=alias, ids=ids, now=now(), age_rate=b.opts.AGE_RATE)
        _record(user, Deployment.current().database(alias), "Retried", [(pk, "Retried") for pk in retried])
        done += len(retried)
    return done


def cancel(user, rows):
    """READY tasks (and BLOCKED workflow steps) become FAILED with a Cancelled error;
    RUNNING ones are asked to stop (their worker fails them with it,
    docs/flow-control.md). Returns how many."""
    done = 0
    for alias, b, ids in _ids_by_backend(rows, "READY", BLOCKED):
        cancelled = b.store.cancel(backend=alias, ids=ids, now=now(), reason=f"cancelled by {user}")
        _record(user, Deployment.current().database(alias), "Cancelled", [(pk, "Cancelled") for pk in cancelled])
        done += len(cancelled)
    for alias, b, ids in _ids_by_backend(rows, "RUNNING"):
        asked = b.store.stop(backend=alias, ids=ids, reason=f"cancelled by {user}")
        _record(user, Deployment.current().database(alias), "Asked to stop",
                [(pk, "Asked to stop (cancel)") for pk in asked])
        done += len(asked)
    return done


def re_enqueue(user, rows):
    """A new task with the same task, priority, queue and arguments; returns the new ids."""
    created = []
    rows = rows.defer(None).defer("errors", "return_value")  # the payload only (the admin defers it)
    for alias, found in _by_backend(((row.backend, row) for row in rows), rows.db).items():
        entries = []
        for row in found:
            args, kwargs, options, _ = decode_payload(row.payload)
            task = resolve_task(row.task_path, priority=row.priority, queue_name=row.queue_name,
                                run_after=None, backend=alias, options=options)
            created.append(task.enqueue(*args, **kwargs).id)
            entries.append((row.pk, f"Enqueued again as {created[-1]}"))
        _record(user, Deployment.current().database(alias), "Enqueued again", entries)
    return created


def delete(user, rows):
    """Delete finished tasks (SUCCESSFUL or FAILED) with their workflow dependencies,
    as pruning does (``store.delete_finished``); waiting and running ones are left
    alone (cancel them first). Returns how many."""
    done = 0
    for alias, b, ids in _ids_by_backend(rows, "SUCCESSFUL", "FAILED"):
        _record(user, Deployment.current().database(alias), "Deleted",
                [(pk, "Deleted") for pk in ids], flag=DELETION)
        for part in chunks(ids):
            done += b.store.delete_finished(part)
    return done


def set_paused(user, backend, queue, paused):
    Deployment.current().store(backend).pause(backend=backend, queue=queue, paused=paused, now=now())
    logger.info("%s %s queue %s/%s", user, "paused" if paused else "resumed", backend, queue)


# -- schedules (docs/operations.md#schedules) ------------------------------------------

def _log_schedules(user, entries):
    """Write ``[(schedule, message)]`` to the admin log and the logger."""
    content_type = ContentType.objects.get_for_model(Schedule)
    LogEntry.objects.bulk_create([
        LogEntry(user_id=user.pk, content_type_id=content_type.pk, object_id=str(s.pk),
                 object_repr=str(s)[:200], action_flag=CHANGE, change_message=message)
        for s, message in entries])
    for s, message in entries:
        logger.info("schedule %s/%s by %s: %s", s.backend, s.name, user, message)


def run_schedules(user, rows):
    """Enqueue each schedule's task now, once, with its arguments, whatever its cron
    and whether it is enabled ("run now"); the occurrences stay as they were. Returns
    the new task ids."""
    created, entries = [], []
    for schedule in rows:
        periodic = schedule.periodic()
        task = task_for(periodic, schedule.backend)
        created.append(task.enqueue(*periodic.args, **periodic.kwargs).id)
        entries.append((schedule, f"Run now: enqueued task {created[-1]}"))
    _log_schedules(user, entries)
    return created


def set_enabled(user, rows, enabled):
    """Enable or disable database schedules (settings ones are left alone, and so is an
    invalid one asked to be enabled); a schedule enabled again starts from its next
    occurrence (the ones missed while it was off are not enqueued). Every server sees
    it within one maintenance tick. Returns how many changed."""
    entries, at = [], now()
    for schedule in rows.filter(source=Schedule.DATABASE).exclude(enabled=enabled):
        if enabled:
            try:
                schedule.last_run_at = schedule.periodic().latest(at)
            except ValueError as exc:  # left disabled: edit it in the admin first
                logger.warning("schedule %s/%s not enabled: %s", schedule.backend, schedule.name, exc)
                continue
        schedule.enabled, schedule.changed_at = enabled, at
        schedule.save(update_fields=["enabled", "changed_at", "last_run_at"])
        entries.append((schedule, "Enabled" if enabled else "Disabled"))
    _log_schedules(user, entries)
    return len(entries)
