"""Read-only data API for the status CLI, the admin and (later) the dashboard.

Nothing here runs on the hot path; the async server never imports it. Priorities are
grouped into bands so a summary stays readable::

    summary(backend="default")  # [{"queue": "emails", "band": "urgent", "ready": 3, ...}]
"""

from django.db.models import Count, Min, Q
from django.tasks import task_backends

from offload.models import QueueState, Server, TaskRow
from offload.store.base import now

#: (name, lowest priority) from highest to lowest.
BANDS = (("urgent", 50), ("high", 10), ("normal", -9), ("low", -49), ("bulk", -100))


def band_of(priority):
    return next(name for name, low in BANDS if priority >= low)


def summary(backend="default"):
    """Per queue and priority band: runnable, scheduled, running and failed counts and
    the oldest runnable task's wait in seconds."""
    db = task_backends[backend].opts.DATABASE
    at = now()
    rows = (TaskRow.objects.using(db).filter(backend=backend, status__in=["READY", "RUNNING", "FAILED"])
            .values("queue_name", "priority")
            .annotate(ready=Count("id", filter=Q(status="READY", available_at__lte=at)),
                      scheduled=Count("id", filter=Q(status="READY", available_at__gt=at)),
                      running=Count("id", filter=Q(status="RUNNING")),
                      failed=Count("id", filter=Q(status="FAILED")),
                      oldest=Min("available_at", filter=Q(status="READY", available_at__lte=at))))
    paused = paused_queues(backend)
    merged = {}
    for row in rows:
        key = (row["queue_name"], band_of(row["priority"]))
        entry = merged.setdefault(key, {"queue": key[0], "band": key[1], "ready": 0, "scheduled": 0,
                                        "running": 0, "failed": 0, "oldest_wait_s": None,
                                        "paused": key[0] in paused})
        for name in ("ready", "scheduled", "running", "failed"):
            entry[name] += row[name]
        if row["oldest"] is not None:
            wait = (at - row["oldest"]).total_seconds()
            entry["oldest_wait_s"] = max(wait, entry["oldest_wait_s"] or 0.0)
    order = {name: i for i, (name, _) in enumerate(BANDS)}
    return sorted(merged.values(), key=lambda e: (e["queue"], order[e["band"]]))


def paused_queues(backend="default"):
    db = task_backends[backend].opts.DATABASE
    return set(QueueState.objects.using(db).filter(backend=backend, paused=True)
               .values_list("queue_name", flat=True))


def servers(include_gone=False):
    rows = Server.objects.all() if include_gone else Server.objects.exclude(state__in=["stopped", "dead"])
    at = now()
    return [{"id": s.id, "role": s.role, "release": s.release, "state": s.state,
             "heartbeat_age_s": (at - s.heartbeat_at).total_seconds()} for s in rows]


def failures(backend="default", limit=20):
    db = task_backends[backend].opts.DATABASE
    return list(TaskRow.objects.using(db).filter(backend=backend, status="FAILED")
                .order_by("-finished_at")[:limit])


def throughput(backend="default", minutes=60):
    """Finished tasks per minute over the last hour: ``[(minute, successful, failed)]``."""
    from datetime import timedelta

    from django.db.models.functions import TruncMinute

    db = task_backends[backend].opts.DATABASE
    start = now().replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    rows = (TaskRow.objects.using(db)
            .filter(backend=backend, status__in=["SUCCESSFUL", "FAILED"], finished_at__gte=start)
            .annotate(minute=TruncMinute("finished_at")).values("minute", "status")
            .annotate(n=Count("id")))
    buckets = {start + timedelta(minutes=i): [0, 0] for i in range(minutes)}
    for row in rows:
        minute = row["minute"].replace(second=0, microsecond=0)
        if minute in buckets:
            buckets[minute][0 if row["status"] == "SUCCESSFUL" else 1] += row["n"]
    return [(minute, ok, failed) for minute, (ok, failed) in buckets.items()]


def waits_by_band(backend="default", sample=5000):
    """Wait (enqueue → start) p50 and max per priority band, from the latest ``sample``
    tasks finished in the last hour (bounded, whatever the table's size)."""
    from datetime import timedelta

    db = task_backends[backend].opts.DATABASE
    rows = (TaskRow.objects.using(db)
            .filter(backend=backend, status__in=["SUCCESSFUL", "FAILED"],
                    finished_at__gte=now() - timedelta(hours=1), started_at__isnull=False)
            .order_by("-finished_at").values_list("priority", "enqueued_at", "started_at")[:sample])
    waits = {}
    for priority, enqueued, started in rows:
        waits.setdefault(band_of(priority), []).append((started - enqueued).total_seconds() * 1000)
    result = []
    for name, _ in BANDS:
        values = sorted(waits.get(name, []))
        if values:
            result.append({"band": name, "tasks": len(values), "p50_ms": values[len(values) // 2],
                           "max_ms": values[-1]})
    return result


def waiting(backend="default", limit=10):
    """The next runnable tasks, in claim order."""
    opts = task_backends[backend].opts
    rows = TaskRow.objects.using(opts.DATABASE).filter(backend=backend, status="READY",
                                                       available_at__lte=now())
    if not opts.AGE_RATE:
        rows = rows.filter(age_key__isnull=True)  # the ready index's condition: no sort
    return list(rows.order_by("-priority", "available_at", "id")[:limit])


def schedules(backend="default"):
    from offload.scheduling.periodic import parse_schedules

    opts = task_backends[backend].opts
    at = now()
    return [{"name": s.name, "task": s.task, "cron": s.cron, "timezone": s.timezone,
             "next_run": s.following(at)} for s in parse_schedules(opts.PERIODIC)]
