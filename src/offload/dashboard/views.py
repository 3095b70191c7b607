"""The dashboard: one page for the state of queues, servers and failures, and POST
actions (CSRF-protected, staff only, logged). Include it in the project's URLs::

    path("offload/", include("offload.dashboard.urls"))
"""

import json

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseNotFound
from django.shortcuts import redirect, render
from django.urls import reverse
from django.tasks import task_backends
from django.views.decorators.http import require_POST

from offload.dashboard import actions, queries
from offload.models import TaskRow

TEXT = "text/plain; charset=utf-8"


def _backend(request):
    alias = request.GET.get("backend") or request.POST.get("backend") or "default"
    if alias not in task_backends.settings:
        alias = "default"
    return alias


@staff_member_required
def index(request):
    backend = _backend(request)
    summary = queries.summary(backend)
    declared = sorted(set(task_backends[backend].queues) | {r["queue"] for r in summary})
    paused = queries.paused_queues(backend)
    servers = {}
    for server in queries.servers():
        servers.setdefault((server["role"], server["release"]), []).append(server)
    failures = [{"row": row, "error": row.last_error,
                 "payload": queries.clip(row.payload_head, row.payload_length)}
                for row in queries.failures(backend)]
    series = queries.throughput(backend)
    peak = max([ok + failed for _, ok, failed in series] + [1])
    return render(request, "offload/dashboard.html", {
        "backend": backend, "backends": list(task_backends.settings), "summary": summary,
        "queues": [{"name": q, "paused": q in paused} for q in declared],
        "servers": sorted(servers.items()), "failures": failures,
        "waiting": queries.waiting(backend), "waits": queries.waits_by_band(backend),
        "schedules": queries.schedules(backend),
        "bars": [_bar(i, minute, ok, failed, peak) for i, (minute, ok, failed) in enumerate(series)],
        "peak": peak,
    })


def _bar(i, minute, ok, failed, peak):
    """One minute of the throughput chart: successful stacked under failed, 100 px high."""
    ok_h, failed_h = ok * 100 / peak, failed * 100 / peak
    return {"x": i * 10, "minute": minute, "n_ok": ok, "n_failed": failed,
            "ok_y": 100 - ok_h, "ok_h": ok_h, "failed_y": 100 - ok_h - failed_h, "failed_h": failed_h}


@staff_member_required
def task_field(request, pk, field):
    """One large field of a task, whole, as text: the arguments (``payload``, JSON), the
    ``errors`` (each attempt's traceback) or the ``return_value`` (JSON)."""
    backend = _backend(request)
    if field not in queries.LARGE_FIELDS:
        return HttpResponseNotFound(f"no field {field!r}: use one of {', '.join(queries.LARGE_FIELDS)}",
                                    content_type=TEXT)
    db = task_backends[backend].opts.DATABASE
    found = TaskRow.objects.using(db).filter(backend=backend, pk=pk).values_list(field, flat=True)
    if not found:
        return HttpResponseNotFound(f"no task {pk} in backend {backend!r}", content_type=TEXT)
    text = found[0]
    if text is None:
        return HttpResponseNotFound(f"task {pk} has no {field}", content_type=TEXT)
    response = HttpResponse(_readable_errors(text) if field == "errors" else text, content_type=TEXT)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _readable_errors(text):
    """Stored errors as text, one traceback after another; the stored text itself if it
    is not a list of errors."""
    try:
        errors = json.loads(text)
        blocks = [f"--- error {i} of {len(errors)}: {e['exception_class_path']}\n{e['traceback']}"
                  for i, e in enumerate(errors, 1)]
    except (ValueError, TypeError, KeyError):
        return text
    return "\n".join(blocks) or text


@require_POST
@staff_member_required
def act(request):
    backend = _backend(request)
    action = request.POST.get("action")
    if action in ("pause", "resume"):
        queue = request.POST.get("queue", "")
        if task_backends[backend].queues and queue not in task_backends[backend].queues:
            return HttpResponseBadRequest(f"unknown queue {queue!r}")
        actions.set_paused(request.user, backend, queue, action == "pause")
        messages.success(request, f"Queue {queue} {'paused' if action == 'pause' else 'resumed'}.")
    elif action in ("retry", "cancel", "re_enqueue"):
        rows = TaskRow.objects.filter(backend=backend, pk=request.POST.get("task") or 0)
        result = getattr(actions, action)(request.user, rows)
        if action == "re_enqueue":
            messages.success(request, f"Enqueued a copy: task {', '.join(result)}.")
        else:
            done = "will run again" if action == "retry" else "cancelled"
            messages.success(request, f"Task {request.POST.get('task')} {done}." if result
                             else f"Nothing to do for task {request.POST.get('task')}.")
    else:
        return HttpResponseBadRequest("unknown action")
    return redirect(f"{reverse('offload:dashboard')}?backend={backend}")
