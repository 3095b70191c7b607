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
    paused = set(QueueState.objects.using(db).filter(backend=backend, paused=True)
                 .values_list("queue_name", flat=True))
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


def servers(include_gone=False):
    rows = Server.objects.all() if include_gone else Server.objects.exclude(state__in=["stopped", "dead"])
    at = now()
    return [{"id": s.id, "role": s.role, "release": s.release, "state": s.state,
             "heartbeat_age_s": (at - s.heartbeat_at).total_seconds()} for s in rows]


def failures(backend="default", limit=20):
    db = task_backends[backend].opts.DATABASE
    return list(TaskRow.objects.using(db).filter(backend=backend, status="FAILED")
                .order_by("-finished_at")[:limit])
