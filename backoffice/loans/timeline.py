"""An application's background tasks, as the staff page shows them: which task, its
priority and queue, how long it waited and ran, on which server (role and release),
its attempts and errors. Reads Offload's task and server tables."""

import json

from offload import get_workflow
from offload.dashboard.queries import band_of
from offload.dashboard.queries import server_of as _server_id
from offload.models import Server, TaskRow


def _ms(start, end):
    return round((end - start).total_seconds() * 1000, 1) if start and end else None


def for_application(application):
    links = list(application.tasks.order_by("created_at", "id"))
    rows = TaskRow.objects.in_bulk([int(link.task_id) for link in links if link.task_id.isdigit()])
    worker_ids = {w for row in rows.values() for w in row.worker_ids.split(",") if w}
    servers = Server.objects.in_bulk({_server_id(w) for w in worker_ids})
    entries = []
    for link in links:
        row = rows.get(int(link.task_id)) if link.task_id.isdigit() else None
        entry = {"name": link.name, "id": link.task_id, "enqueued_at": link.created_at, "row": row}
        if row is not None:
            workers = [w for w in row.worker_ids.split(",") if w]
            server = servers.get(_server_id(workers[-1])) if workers else None
            errors = json.loads(row.errors or "[]")
            entry.update(
                status=row.status, queue=row.queue_name, priority=row.priority, band=band_of(row.priority),
                wait_ms=_ms(row.enqueued_at, row.started_at),
                run_ms=_ms(row.last_attempted_at, row.finished_at),
                attempts=row.attempts, worker=workers[-1] if workers else None,
                role=server.role if server else None, release=server.release if server else None,
                # The traceback's last line names the exception and its message.
                errors=[(e["traceback"].strip().splitlines() or [e["exception_class_path"]])[-1]
                        for e in errors],
                retry_at=row.available_at if row.status == "READY" and row.attempts else None,
            )
        entries.append(entry)
    _place_bars(entries)
    return entries


def workflows(application):
    """The application's Offload workflows (its processing, its offer): name, status and
    steps done, read from any process with ``get_workflow``."""
    ids = sorted(set(application.tasks.exclude(workflow_id=None).values_list("workflow_id", flat=True)))
    found = []
    for id_ in ids:
        try:
            flow = get_workflow(id_)
        except LookupError:  # pruned (older than the retention)
            continue
        found.append({"id": id_, "name": flow.name.split(": ", 1)[-1], "status": flow.status,
                      "steps": len(flow.steps), "done": sum(s.status == "SUCCESSFUL" for s in flow.steps)})
    return found


def _place_bars(entries):
    """Percent offsets for a bar per task: waiting (enqueue → start) then running
    (last start → finish, or now), on one time axis from the first enqueue."""
    from django.utils import timezone

    rows = [e["row"] for e in entries if e.get("row") is not None]
    if not rows:
        return
    at = timezone.now()
    start = min(r.enqueued_at for r in rows)
    end = max(r.finished_at or at for r in rows)
    span = max((end - start).total_seconds(), 0.001)

    def pct(t):
        return round((t - start).total_seconds() / span * 100, 2)

    for entry in entries:
        row = entry.get("row")
        if row is None:
            continue
        begun = None if row.status == "READY" else row.last_attempted_at or row.started_at
        entry["bar"] = {"left": pct(row.enqueued_at),
                        "wait": pct(begun or row.finished_at or at) - pct(row.enqueued_at),
                        "run": (pct(row.finished_at or at) - pct(begun)) if begun else 0}
