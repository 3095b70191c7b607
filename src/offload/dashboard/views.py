"""The dashboard: one page for the state of queues, servers and failures, and POST
actions (CSRF-protected, logged). Include it in the project's URLs::

    path("offload/", include("offload.dashboard.urls"))

Staff only, with the admin's model permissions: ``offload.view_taskrow`` (or
``change_taskrow``) to see, ``offload.change_taskrow`` to retry, cancel and enqueue a
copy, ``offload.change_queuestate`` to pause and resume. Every query names the chosen
backend's database.
"""

import json
import re
from functools import wraps
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.tasks import task_backends
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from offload.dashboard import actions, queries
from offload.deployment import Deployment
from offload.models import TaskRow

TEXT = "text/plain; charset=utf-8"


#: The largest id a task row can have (a bigint).
MAX_ID = 2**63 - 1


class Refused(Exception):
    """A request the dashboard answers with ``status`` and a plain-text ``message``."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


def answers_refusals(view):
    """Turn ``Refused`` into a plain-text response (never HTML: messages quote input)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except Refused as refused:
            return HttpResponse(f"{refused}\n", status=refused.status, content_type=TEXT)

    return wrapper


def _backend(request):
    """The chosen Offload backend's alias (``backend=``), by default ``default`` or the
    first Offload backend."""
    aliases = Deployment.current().backends
    if not aliases:
        raise Refused("no Offload backend in TASKS: add one with "
                      "'BACKEND': 'offload.backend.OffloadBackend'", status=404)
    alias = request.GET.get("backend") or request.POST.get("backend")
    if not alias:
        return "default" if "default" in aliases else aliases[0]
    if alias not in aliases:
        raise Refused(f"backend={alias!r} is not an Offload backend: use one of {', '.join(aliases)}")
    return alias


def _require(request, allowed, permission, doing):
    if not allowed:
        raise Refused(f"{request.user} may not {doing}: that needs the permission {permission} "
                      "(grant it in the admin, to the user or a group)", status=403)


@staff_member_required
@answers_refusals
def index(request):
    _require(request, actions.may_view(request.user), "offload.view_taskrow", "see the tasks")
    backend = _backend(request)
    db = Deployment.current().database(backend)
    summary = queries.summary(backend)
    declared = sorted(set(task_backends[backend].queues) | {r["queue"] for r in summary})
    paused = queries.paused_queues(backend)
    servers = {}
    for server in queries.servers(db=db):
        servers.setdefault((server["role"], server["release"]), []).append(server)
    failures = [{"row": row, "error": row.last_error,
                 "payload": queries.clip(row.payload_head, row.payload_length)}
                for row in queries.failures(backend)]
    chart = throughput_chart(queries.throughput(backend))
    times, bands, queues = queries.last_hour(backend)
    charts = [line_chart(times, [(band, [f["wait_p95"] for f in figures]) for band, figures in bands.items()],
                         "s", "wait before start by band, p95 per minute"),
              line_chart(times, [(queue, [f["tasks"] for f in figures]) for queue, figures in queues.items()],
                         "", "finished per minute by queue")]
    return render(request, "offload/dashboard.html", {
        "backend": backend, "backends": Deployment.current().backends, "summary": summary,
        "may_change_tasks": request.user.has_perm(actions.PERMISSIONS["retry"]),
        "may_change_queues": request.user.has_perm(actions.PERMISSIONS["pause"]),
        "may_run_schedules": request.user.has_perm(actions.PERMISSIONS["run_schedule"]),
        "queues": [{"name": q, "paused": q in paused} for q in declared],
        "servers": sorted(servers.items()), "failures": failures,
        "waiting": queries.waiting(backend), "running": queries.running(backend),
        "waits": queries.waits_by_band(backend),
        "schedules": queries.schedules(backend),
        "workflows": queries.workflows(backend),
        "chart": chart, "charts": charts,
    })


def _browse_filters(request, backend):
    """The task browser's filters from the query string, or Refused naming the bad one."""
    from django.utils.dateparse import parse_datetime

    get = request.GET
    filters = {}
    state = get.get("state", "")
    if state and state not in queries.BROWSE_STATES:
        raise Refused(f"state={state[:40]!r}: use one of {', '.join(queries.BROWSE_STATES)}")
    band = get.get("band", "")
    if band and band not in dict(queries.BANDS):
        raise Refused(f"band={band[:40]!r}: use one of {', '.join(b for b, _ in queries.BANDS)}")
    filters.update(state=state or None, band=band or None,
                   queue=get.get("queue", "")[:100] or None, task=get.get("task", "")[:255] or None,
                   server=get.get("server", "").strip()[:100] or None,
                   release=get.get("release", "").strip()[:100] or None)
    if get.get("id", "").strip():
        filters["task_id"] = _id("id", get["id"].strip(), "task")
    for name in ("since", "until"):
        text = get.get(name, "").strip()
        if text:
            at = parse_datetime(text)
            if at is None:
                raise Refused(f"{name}={text[:40]!r}: send a date and time such as 2026-12-02T09:30")
            filters[name] = at if at.tzinfo else at.replace(tzinfo=timezone.get_current_timezone())
    return filters


#: The filters' names in a query string (what a page, a sort and a bulk action keep).
FILTER_FIELDS = ("backend", "state", "queue", "band", "task", "id", "since", "until", "server",
                 "release")


def _kept_filters(request):
    """The filters of the request's query string that are set (``FILTER_FIELDS``)."""
    return {k: v for k, v in request.GET.items() if k in FILTER_FIELDS and v}


@staff_member_required
@answers_refusals
def tasks(request):
    """The task browser: every task of a backend, filtered, newest first, a page at a
    time by keyset (``after``/``before`` an id; never an OFFSET), or the longest waits
    or runs among the newest matches (``sort``); and bulk actions on the filter."""
    _require(request, actions.may_view(request.user), "offload.view_taskrow", "see the tasks")
    backend = _backend(request)
    filters = _browse_filters(request, backend)
    sort = request.GET.get("sort", "newest")
    if sort not in queries.SORTS:
        raise Refused(f"sort={sort[:40]!r}: use one of {', '.join(queries.SORTS)}")
    cursors = {name: _id(name, request.GET[name].strip(), "task")
               for name in ("after", "before") if request.GET.get(name, "").strip()}
    rows, older, newer = queries.browse(backend, sort=sort, **cursors, **filters)
    kept = _kept_filters(request)
    return render(request, "offload/tasks.html", {
        "backend": backend, "sort": sort, "scan": queries.SORT_SCAN,
        "rows": [{"row": r, "band": queries.band_of(r.priority),
                  "wait": _seconds(r.available_at, r.last_attempted_at),
                  "run": _seconds(r.last_attempted_at, r.finished_at)} for r in rows],
        "states": queries.BROWSE_STATES, "bands": [b for b, _ in queries.BANDS],
        "queues": sorted(task_backends[backend].queues or ()), "filters": kept,
        "sorts": [(s, urlencode({**kept, "sort": s})) for s in queries.SORTS],
        "bulk": [(action, label) for action, label, _ in TASK_ACTIONS
                 if request.user.has_perm(actions.PERMISSIONS[action])],
        "older": older and urlencode({**kept, "after": older}),
        "newer": newer and urlencode({**kept, "before": newer}),
    })


def _seconds(start, end):
    return (end - start).total_seconds() if start and end and end >= start else None


#: A bulk action acts on at most this many tasks; narrow the filter for more.
BULK_MAX = 100_000
#: Tasks per batch of a bulk action (each batch is one call of the action).
BULK_BATCH = 1_000


def _bulk_rows(request, backend, source):
    """The action named in ``source`` (GET or POST), and the rows it would act on:
    those matching the filters, in the statuses it applies to."""
    action = source.get("action", "")
    found = {a: (label, statuses) for a, label, statuses in TASK_ACTIONS}
    if action not in found:
        raise Refused(f"action={action[:40]!r}: use one of {', '.join(found)}")
    permission = actions.PERMISSIONS[action]
    _require(request, request.user.has_perm(permission), permission, action.replace("_", "-"))
    rows = queries.matching(backend, **_browse_filters(request, backend))
    statuses = found[action][1]
    return action, found[action][0], rows.filter(status__in=statuses) if statuses else rows


@staff_member_required
@answers_refusals
def bulk(request):
    """A bulk action on every task that matches the browser's filters: GET asks for a
    confirmation that states the count (of the tasks the action applies to, up to the
    newest id now, so tasks enqueued later are left alone); POST does it in batches of
    BULK_BATCH, each logged in the admin log, and says how many."""
    backend = _backend(request)
    if request.method == "POST":
        return _bulk_apply(request, backend)
    action, label, rows = _bulk_rows(request, backend, request.GET)
    upto = rows.order_by("-id").values_list("id", flat=True).first()
    count = rows[:BULK_MAX + 1].count() if upto is not None else 0
    kept = _kept_filters(request)
    return render(request, "offload/bulk.html", {
        "backend": backend, "action": action, "label": label, "count": count, "upto": upto,
        "too_many": count > BULK_MAX, "max": BULK_MAX, "batch": BULK_BATCH,
        "batches": -(-min(count, BULK_MAX) // BULK_BATCH), "filters": kept,
        "back": f"{reverse('offload:tasks')}?{urlencode(kept)}",
    })


def _bulk_apply(request, backend):
    # The filters travel in the query string, the action and the bound in the form.
    action, label, rows = _bulk_rows(request, backend, request.POST)
    upto = _id("upto", request.POST.get("upto", ""), "task")
    expected = _id("count", request.POST.get("count", ""), "count")
    rows = rows.filter(pk__lte=upto)
    if expected > BULK_MAX:
        raise Refused(f"{expected:,} tasks match: a bulk action takes at most {BULK_MAX:,}; "
                      "narrow the filter (a task, a queue, a time range)")
    done, batches, cursor = 0, 0, upto + 1
    while True:
        ids = list(rows.filter(pk__lt=cursor).order_by("-id").values_list("id", flat=True)[:BULK_BATCH])
        if not ids or batches * BULK_BATCH >= BULK_MAX:
            break
        result = getattr(actions, action)(request.user, rows.model.objects.using(rows.db).filter(pk__in=ids))
        done += len(result) if isinstance(result, list) else result
        batches, cursor = batches + 1, ids[-1]
    messages.success(request, f"{label}: {done:,} of the {expected:,} matching tasks, in "
                              f"{batches:,} batch{'es' if batches != 1 else ''} (logged in the admin log).")
    kept = _kept_filters(request)
    return redirect(f"{reverse('offload:tasks')}?{urlencode(kept)}")


#: What each action on one task applies to (status, or the condition in a comment).
TASK_ACTIONS = (("retry", "Retry", ("FAILED",)), ("cancel", "Cancel", ("READY", "BLOCKED", "RUNNING")),
                ("re_enqueue", "Enqueue a copy", None), ("delete", "Delete", ("SUCCESSFUL", "FAILED")))


def _task_actions(user, row):
    """The actions ``user`` may take on ``row`` now: ``[(action, label)]``."""
    return [(action, label) for action, label, statuses in TASK_ACTIONS
            if user.has_perm(actions.PERMISSIONS[action])
            and (statuses is None or row.status in statuses)
            and not (action == "cancel" and row.cancel_error)]


@staff_member_required
@answers_refusals
def task(request, pk):
    """One task: its arguments, result, each attempt (worker, server, role, release,
    error), its times as a timeline, its workflow, and what may be done with it."""
    _require(request, actions.may_view(request.user), "offload.view_taskrow", "see the tasks")
    backend = _backend(request)
    detail = queries.task_detail(backend, pk)
    if detail is None:
        raise Refused(f"no task {pk} in backend {backend!r}", status=404)
    return render(request, "offload/task.html", {
        "backend": backend, **detail, "actions": _task_actions(request.user, detail["row"]),
        "here": request.get_full_path()})


#: The workflow graph's boxes (SVG units): width, height, and the steps between them.
NODE_W, NODE_H, LAYER_STEP, ROW_STEP = 190, 42, 240, 56


def workflow_svg(graph):
    """Geometry of a workflow's graph (queries.workflow_graph): a column per layer, left
    to right, a box per node; an edge from the right of a box to the left of the next."""
    at, nodes = {}, []
    for depth, layer in enumerate(graph["layers"]):
        for row, node in enumerate(layer):
            x, y = 10 + depth * LAYER_STEP, 10 + row * ROW_STEP
            at[node["key"]] = (x, y)
            counts = ", ".join(f"{n:,} {s.lower()}" for s, n in sorted(node["counts"].items()))
            label = (f"step {node['ids'][0]}" if len(node["ids"]) == 1 else
                     f"{len(node['ids']):,} steps: {counts}")
            nodes.append({"x": x, "y": y, "status": node["status"], "ids": node["ids"],
                          "task": node["task"].rsplit(".", 1)[-1], "path": node["task"], "label": label})
    edges = [{"x1": at[a][0] + NODE_W, "y1": at[a][1] + NODE_H / 2, "x2": at[b][0],
              "y2": at[b][1] + NODE_H / 2} for a, b in graph["edges"]]
    width = 20 + max(len(graph["layers"]) - 1, 0) * LAYER_STEP + NODE_W
    height = 20 + max((len(layer) for layer in graph["layers"]), default=1) * ROW_STEP
    return {"nodes": nodes, "edges": edges, "width": width, "height": height,
            "node_w": NODE_W, "node_h": NODE_H}


@staff_member_required
@answers_refusals
def workflow(request, pk):
    """One workflow: its steps and their state, and the graph of what waits for what."""
    _require(request, actions.may_view(request.user), "offload.view_taskrow", "see the tasks")
    backend = _backend(request)
    graph = queries.workflow_graph(backend, pk)
    if graph is None:
        raise Refused(f"no workflow {pk} in backend {backend!r}", status=404)
    parents = graph["parents"]
    return render(request, "offload/workflow.html", {
        "backend": backend, "graph": graph, "svg": workflow_svg(graph),
        "steps": [{"id": id_, "task": path, "status": status, "attempts": attempts,
                   "depends_on": parents.get(id_, [])} for id_, path, status, attempts in graph["steps"]],
        "more": sum(graph["counts"].values()) - len(graph["steps"]),
    })


#: The throughput chart's plot area in SVG units: left edge, top, height; a bar per minute
#: every BAR_STEP units. Room is left for the y labels and, below, the time labels.
CHART_LEFT, CHART_TOP, CHART_HEIGHT, BAR_STEP = 44, 8, 100, 10


def _nice_ceiling(peak):
    """The smallest of 1, 2, 4, 6, 8, 10, 20, 40, ... that is at least ``peak`` (so the
    middle grid line is a whole number)."""
    scale = 1
    while True:
        for step in (1, 2, 4, 6, 8):
            if step * scale >= peak:
                return step * scale
        scale *= 10


def throughput_chart(series):
    """The throughput chart's geometry from ``[(minute, successful, failed)]``: bars
    (successful stacked under failed), y grid lines with their task counts, and a time
    label every 10 minutes and at the current minute."""
    peak = max([ok + failed for _, ok, failed in series] + [0])
    top = _nice_ceiling(max(peak, 1))
    base = CHART_TOP + CHART_HEIGHT

    def y(count):
        return base - count * CHART_HEIGHT / top

    bars = [{"x": CHART_LEFT + i * BAR_STEP + 1, "minute": minute, "n_ok": ok, "n_failed": failed,
             "ok_y": y(ok), "ok_h": base - y(ok), "failed_y": y(ok + failed), "failed_h": y(ok) - y(ok + failed)}
            for i, (minute, ok, failed) in enumerate(series)]
    last = len(series) - 1
    x_ticks = [{"x": CHART_LEFT + i * BAR_STEP + BAR_STEP / 2, "minute": series[i][0],
                "ago": last - i} for i in sorted({*range(0, last, 10), last}) if last >= 0]
    y_ticks = [{"y": y(v), "value": v} for v in ((0, top // 2, top) if top > 1 else (0, 1))]
    return {"bars": bars, "x_ticks": x_ticks, "y_ticks": y_ticks, "peak": peak,
            "left": CHART_LEFT, "right": CHART_LEFT + len(series) * BAR_STEP, "top": CHART_TOP,
            "base": base, "width": CHART_LEFT + len(series) * BAR_STEP + 24}


@staff_member_required
@answers_refusals
def task_field(request, pk, field):
    """One large field of a task, whole, as text: the arguments (``payload``, JSON), the
    ``errors`` (each attempt's traceback) or the ``return_value`` (JSON)."""
    _require(request, actions.may_view(request.user), "offload.view_taskrow", "see the tasks")
    backend = _backend(request)
    if field not in queries.LARGE_FIELDS:
        raise Refused(f"no field {field!r}: use one of {', '.join(queries.LARGE_FIELDS)}", status=404)
    db = Deployment.current().database(backend)
    found = TaskRow.objects.using(db).filter(backend=backend, pk=pk).values_list(field, flat=True)
    if not found:
        raise Refused(f"no task {pk} in backend {backend!r}", status=404)
    text = found[0]
    if text is None:
        raise Refused(f"task {pk} has no {field}", status=404)
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


def _task_id(request):
    return _number(request, "task")


def _number(request, name):
    """The id in POST field ``name`` (a task's, a schedule's), or Refused."""
    return _id(name, request.POST.get(name, ""), name)


def _id(name, text, what):
    """``text`` (field ``name``) as the id of a ``what``, or Refused."""
    if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) > MAX_ID:
        raise Refused(f"{name}={text[:40]!r}: send the id of a {what} (a whole number)")
    return int(text)


def _queue(request, backend):
    queue = request.POST.get("queue", "")
    declared = task_backends[backend].queues
    if declared and queue not in declared:
        raise Refused(f"unknown queue {queue[:100]!r} of backend {backend!r}: use one of "
                      f"{', '.join(sorted(declared))}")
    if not 0 < len(queue) <= 100 or "\x00" in queue:
        raise Refused(f"queue={queue[:100]!r}: send a queue name (1 to 100 characters, no NUL)")
    return queue


@require_POST
@staff_member_required
@answers_refusals
def act(request):
    backend = _backend(request)
    action = request.POST.get("action", "")
    if action not in actions.PERMISSIONS:
        raise Refused(f"unknown action {action[:40]!r}: use one of {', '.join(actions.PERMISSIONS)}")
    permission = actions.PERMISSIONS[action]
    _require(request, request.user.has_perm(permission), permission, action.replace("_", "-"))
    if action.endswith("_schedule"):
        from offload.models import Schedule

        schedules = Schedule.objects.using(Deployment.current().database(backend)).filter(
            backend=backend, pk=_number(request, "schedule"))
        if not schedules:
            raise Refused(f"no schedule {request.POST.get('schedule', '')[:40]!r} of backend {backend!r}")
        name = schedules[0].name
        if action == "run_schedule":
            [created] = actions.run_schedules(request.user, schedules)
            messages.success(request, f"Schedule {name} run now: task {created}.")
        elif actions.set_enabled(request.user, schedules, action == "enable_schedule"):
            messages.success(request, f"Schedule {name} {action.split('_')[0]}d: every server "
                                      "follows within a second.")
        else:
            messages.warning(request, f"Nothing to do for schedule {name} (a settings schedule "
                                      "is changed in the settings).")
    elif action in ("pause", "resume"):
        queue = _queue(request, backend)
        actions.set_paused(request.user, backend, queue, action == "pause")
        messages.success(request, f"Queue {queue} {'paused' if action == 'pause' else 'resumed'}.")
    else:
        task_id = _task_id(request)
        db = Deployment.current().database(backend)
        rows = TaskRow.objects.using(db).filter(backend=backend, pk=task_id)
        running = rows.filter(status="RUNNING").exists()
        result = getattr(actions, action)(request.user, rows)
        if not result:
            messages.warning(request, f"Nothing to do for task {task_id}.")
        elif action == "re_enqueue":
            messages.success(request, f"Enqueued a copy: task {', '.join(result)}.")
        elif action == "delete":
            messages.success(request, f"Task {task_id} deleted.")
            return redirect(f"{reverse('offload:tasks')}?{urlencode({'backend': backend})}")
        elif action == "cancel" and running:
            messages.success(request, f"Task {task_id} asked to stop; its worker fails it with Cancelled.")
        else:
            messages.success(request, f"Task {task_id} {'will run again' if action == 'retry' else 'cancelled'}.")
    return redirect(_next(request) or f"{reverse('offload:dashboard')}?{urlencode({'backend': backend})}")


def _next(request):
    """The page an action came from (POST ``next``), if it is one of this site's."""
    from django.utils.http import url_has_allowed_host_and_scheme

    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return None


# -- line charts ---------------------------------------------------------------------------

#: A line chart's plot area (SVG units): left edge (room for the y labels), top, width,
#: height; below it room for the time labels and the legend.
LINE_LEFT, LINE_TOP, LINE_WIDTH, LINE_HEIGHT = 58, 10, 560, 110
#: The lines' colours, in order.
COLOURS = ("#2b6cb0", "#dd6b20", "#2f855a", "#c53030", "#6b46c1", "#718096")


def _label(value, unit):
    from offload.templatetags.offload_format import format_duration, format_percent

    if unit == "s":
        return format_duration(value)
    if unit == "%":
        return format_percent(value)
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def line_chart(times, series, unit, title):
    """An SVG line chart's geometry: ``times`` (bucket starts, oldest first), ``series``
    ``[(name, [value or None per time])]`` in ``unit`` ("s": durations, "%": a fraction,
    "": counts). Each point carries its hover text; the y axis starts at 0 with three
    labelled grid lines; a time label about every sixth of the width."""
    peak = max([v for _, values in series for v in values if v is not None] + [0])
    top = _nice_ceiling(peak) if unit == "" and peak >= 1 else (peak * 1.1 or 1)
    n = max(len(times) - 1, 1)

    def x(i):
        return LINE_LEFT + i * LINE_WIDTH / n

    def y(v):
        return LINE_TOP + LINE_HEIGHT - v / top * LINE_HEIGHT

    lines = []
    for (name, values), colour in zip(series, COLOURS, strict=False):
        points = [{"x": round(x(i), 1), "y": round(y(v), 1),
                   "title": f"{times[i]:%H:%M} · {name}: {_label(v, unit)}"}
                  for i, v in enumerate(values) if v is not None]
        lines.append({"name": name, "colour": colour, "points": points,
                      "path": " ".join(f"{p['x']},{p['y']}" for p in points)})
    every = max(1, round(len(times) / 6))
    days = len(times) > 1 and (times[-1] - times[0]).days >= 1
    x_ticks = [{"x": round(x(i), 1), "label": f"{t:%a %H:%M}" if days else f"{t:%H:%M}"}
               for i, t in enumerate(times) if i % every == 0]
    y_ticks = [{"y": round(y(v), 1), "label": _label(v, unit)} for v in (0, top / 2, top)]
    return {"title": title, "lines": lines, "x_ticks": x_ticks, "y_ticks": y_ticks,
            "left": LINE_LEFT, "right": LINE_LEFT + LINE_WIDTH, "top": LINE_TOP,
            "base": LINE_TOP + LINE_HEIGHT, "width": LINE_LEFT + LINE_WIDTH + 16,
            "height": LINE_TOP + LINE_HEIGHT + 44,
            "empty": all(v is None for _, values in series for v in values)}


@staff_member_required
@answers_refusals
def stats(request):
    """Which task is slow or failing: per task path over a window, from offload_series
    (count, failure rate, wait and run p50/p95), sortable; and one task's charts over
    the window (``task``)."""
    _require(request, actions.may_view(request.user), "offload.view_taskrow", "see the tasks")
    backend = _backend(request)
    window = request.GET.get("window", "1h")
    windows = [w for w, _, _ in queries.WINDOWS]
    if window not in windows:
        raise Refused(f"window={window[:40]!r}: use one of {', '.join(windows)}")
    sort = request.GET.get("sort", "run_p95")
    if sort not in queries.TASK_SORTS:
        raise Refused(f"sort={sort[:40]!r}: use one of {', '.join(queries.TASK_SORTS)}")
    task = request.GET.get("task", "")[:255]
    charts = []
    if task:
        series = queries.task_series(backend, task, window)
        times = [t for t, _ in series]
        figures = [f for _, f in series]
        charts = [
            line_chart(times, [("finished", [f["tasks"] for f in figures]),
                               ("failed", [f["failed"] for f in figures])], "", "tasks finished"),
            line_chart(times, [("failure rate", [f["failure_rate"] for f in figures])], "%",
                       "failure rate"),
            line_chart(times, [("p50", [f["wait_p50"] for f in figures]),
                               ("p95", [f["wait_p95"] for f in figures])], "s", "wait before start"),
            line_chart(times, [("p50", [f["run_p50"] for f in figures]),
                               ("p95", [f["run_p95"] for f in figures])], "s", "run time"),
        ]
    base = {"backend": backend, "window": window}
    return render(request, "offload/stats.html", {
        "backend": backend, "window": window, "sort": sort, "task": task,
        "rows": queries.task_stats(backend, window, sort),
        "windows": [(w, urlencode({**base, "sort": sort, **({"task": task} if task else {}),
                                   "window": w})) for w in windows],
        "sorts": {s: urlencode({**base, "sort": s}) for s in queries.TASK_SORTS},
        "charts": charts, "base": urlencode(base),
    })
