"""Read-only data API for the status CLI, the admin, the dashboard and the metrics.

Nothing here runs on the hot path; the async server never imports it. Priorities are
grouped into bands so a summary stays readable::

    summary(backend="default")  # [{"queue": "emails", "band": "urgent", "ready": 3, ...}]
"""

from datetime import timedelta

from django.db import DatabaseError, connections, transaction
from django.db.models import BooleanField, Case, Count, Min, Q, Sum, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import Length, Substr
from django.tasks import task_backends

from offload.clock import now
from offload.deployment import Deployment
from offload.models import LegacyStat, QueueState, Schedule, Server, TaskRow, TaskStat
from offload.results import decode_errors
from offload.stats import bucket_columns
from offload.workflows import status_of

#: (name, lowest priority) from highest to lowest.
BANDS = (("urgent", 50), ("high", 10), ("normal", -9), ("low", -49), ("bulk", -100))


def band_of(priority):
    return next(name for name, low in BANDS if priority >= low)


#: The summary's counts: runnable now, waiting for a full concurrency key (set aside,
#: docs/flow-control.md), waiting for their turn under a rate limit, workflow steps
#: waiting for the steps they depend on (BLOCKED, docs/workflows.md), due later,
#: running, failed.
STATES = ("ready", "waiting_key", "waiting_rate", "waiting_steps", "scheduled", "running",
          "failed")


def _status_in(*statuses):
    """``status IN (...)`` with the statuses written into the SQL rather than bound:
    SQLite uses a partial index such as offload_task_pending only when the query's terms
    match its condition, and ``status IN (?, ?)`` does not; it read the whole table
    instead (180 vs 56 ms with 100,000 READY rows among 1,000,000). The statuses are
    this module's constants, never input."""
    assert all(s.isalpha() and s.isupper() for s in statuses), statuses
    listed = ", ".join(f"'{s}'" for s in statuses)
    return RawSQL(f'"offload_task"."status" IN ({listed})', [], output_field=BooleanField())


def summary(backend="default"):
    """Per queue and priority band: the counts of ``STATES`` and the oldest runnable
    (or key-waiting) task's wait in seconds.

    Waiting and failed tasks are counted from the ``offload_task_pending`` index alone
    and running ones through the lease index, so finished rows are never read."""
    db = Deployment.current().database(backend)
    at = now()
    tasks = TaskRow.objects.using(db).filter(backend=backend)
    rows = list(tasks.filter(_status_in("READY", "FAILED")).values("queue_name", "priority")
                .annotate(ready=Count("id", filter=Q(status="READY", available_at__lte=at)),
                          scheduled=Count("id", filter=Q(status="READY", available_at__gt=at)),
                          failed=Count("id", filter=Q(status="FAILED")),
                          oldest=Min("available_at", filter=Q(status="READY", available_at__lte=at))))
    rows += (tasks.filter(status="RUNNING").values("queue_name", "priority")
             .annotate(running=Count("id")))
    # Runnable but set aside while their concurrency key is full (a few rows, through
    # offload_task_key_waiting): counted as waiting on a key instead of ready.
    rows += [{**r, "ready": -r["waiting_key"]} for r in
             tasks.filter(status="READY", key_waiting=True, available_at__lte=at)
             .values("queue_name", "priority").annotate(waiting_key=Count("id"))]
    # Given a later turn by a rate limit (through offload_task_paced): waiting on a rate
    # limit instead of scheduled.
    rows += [{**r, "scheduled": -r["waiting_rate"]} for r in
             tasks.filter(status="READY", rate_paced=True, available_at__gt=at)
             .values("queue_name", "priority").annotate(waiting_rate=Count("id"))]
    # Workflow steps waiting for others (through offload_task_blocked).
    rows += (tasks.filter(status="BLOCKED").values("queue_name", "priority")
             .annotate(waiting_steps=Count("id")))
    paused = paused_queues(backend)
    merged = {}
    for row in rows:
        key = (row["queue_name"], band_of(row["priority"]))
        entry = merged.setdefault(key, {"queue": key[0], "band": key[1],
                                        **dict.fromkeys(STATES, 0), "oldest_wait_s": None,
                                        "paused": key[0] in paused})
        for name in STATES:
            entry[name] += row.get(name, 0)
        if row.get("oldest") is not None:
            wait = (at - row["oldest"]).total_seconds()
            entry["oldest_wait_s"] = max(wait, entry["oldest_wait_s"] or 0.0)
    order = {name: i for i, (name, _) in enumerate(BANDS)}
    return sorted(merged.values(), key=lambda e: (e["queue"], order[e["band"]]))


def paused_queues(backend="default"):
    db = Deployment.current().database(backend)
    return set(QueueState.objects.using(db).filter(backend=backend, paused=True)
               .values_list("queue_name", flat=True))


def servers(include_gone=False, db=None):
    """Registered servers (in database ``db``; by default in every registry database)."""
    from offload import registry

    if db is None:
        rows = registry.listing(include_gone=include_gone)
    else:
        rows = Server.objects.using(db).all()
        if not include_gone:
            rows = rows.exclude(state__in=["stopped", "dead"])
    at = now()
    return [{"id": s.id, "role": s.role, "release": s.release, "state": s.state,
             "heartbeat_age_s": (at - s.heartbeat_at).total_seconds()} for s in rows]


#: Characters of arguments, results and tracebacks a page shows; the rest is one click
#: away (``offload:task_field``).
PREVIEW_CHARS = 3000
#: The large text fields of a task row, never read whole for a list.
LARGE_FIELDS = ("payload", "errors", "return_value")
#: A stored errors list up to this long is read and parsed here; a longer one is looked
#: into by the database, which returns just the last error's start.
ERRORS_READ_WHOLE = 64 * 1024


def previewed(rows, fields=("payload", "return_value")):
    """``rows`` (TaskRows) without the large fields, annotated with the first
    PREVIEW_CHARS characters of each of ``fields`` (``payload_head``) and its length
    (``payload_length``)."""
    annotations = {}
    for name in fields:
        annotations[f"{name}_head"] = Substr(name, 1, PREVIEW_CHARS)
        annotations[f"{name}_length"] = Length(name)
    return rows.defer(*LARGE_FIELDS).annotate(**annotations)


def clip(head, length):
    """``{"text", "more"}``: a field's first characters and how many were left out."""
    if head is None:
        return None
    return {"text": head, "more": max(0, (length or 0) - len(head))}


def failures(backend="default", limit=20):
    """The latest FAILED tasks, without their large fields: each row has ``payload_head``
    and ``payload_length`` (see ``previewed``) and ``last_error``, None or a dict of
    ``exception_class_path`` and ``traceback`` (a ``clip``)."""
    db = Deployment.current().database(backend)
    rows = list(_with_errors(previewed(TaskRow.objects.using(db).filter(backend=backend,
                                                                        status="FAILED")))
                .order_by("-finished_at")[:limit])
    for row in rows:
        if _read_whole(row):
            errors = decode_errors(row.errors_whole)
            row.last_error = _clipped(errors[-1]) if errors else None
        else:
            row.last_error = _last_error_in_database(db, row.pk)
    return rows


def _with_errors(rows, limit=ERRORS_READ_WHOLE):
    """``rows`` annotated with ``errors_length`` and ``errors_whole``: the stored errors
    when they are at most ``limit`` characters (longer ones are looked into by the
    database, ``_last_error_in_database``)."""
    return (rows.annotate(errors_length=Length("errors"))
            .annotate(errors_whole=Case(When(errors_length__lte=limit, then="errors"))))


def _read_whole(row, limit=ERRORS_READ_WHOLE):
    """Whether ``_with_errors`` read ``row``'s errors whole."""
    return row.errors_length is None or row.errors_length <= limit


def _clipped(error):
    """An error (``results.decode_errors``) as the pages show it: its class path and its
    traceback's first PREVIEW_CHARS characters (a ``clip``)."""
    return {"exception_class_path": error.exception_class_path,
            "traceback": clip(error.traceback[:PREVIEW_CHARS], len(error.traceback))}


_LAST_ERROR_SQL = {
    "postgresql": "SELECT e ->> 'exception_class_path', left(e ->> 'traceback', %s), "
                  "length(e ->> 'traceback') "
                  "FROM (SELECT errors::jsonb -> -1 AS e FROM offload_task WHERE id = %s) AS last",
    "sqlite": "SELECT json_extract(e, '$.exception_class_path'), "
              "substr(json_extract(e, '$.traceback'), 1, %s), length(json_extract(e, '$.traceback')) "
              "FROM (SELECT json_extract(errors, '$[#-1]') AS e FROM offload_task WHERE id = %s)",
}


def _last_error_in_database(db, pk):
    """The last error of a long errors list, its traceback clipped, read by the
    database; None if the list is not valid JSON."""
    connection = connections[db]
    try:
        with transaction.atomic(using=db), connection.cursor() as cursor:
            cursor.execute(_LAST_ERROR_SQL[connection.vendor], [PREVIEW_CHARS, pk])
            found = cursor.fetchone()
    except DatabaseError:
        return None
    if not found or found[0] is None:
        return None
    path, head, length = found
    return {"exception_class_path": path, "traceback": clip(head or "", length)}


def throughput(backend="default", minutes=60):
    """Finished tasks per minute over the last hour: ``[(minute, successful, failed)]``."""
    start = now().replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    buckets = {start + timedelta(minutes=i): [0, 0] for i in range(minutes)}
    for rows in _stat_tables(backend, since=start):
        for row in (rows.filter(outcome__in=["SUCCESSFUL", "FAILED"])
                    .values("minute", "outcome").annotate(n=Sum("tasks"))):
            if row["minute"] in buckets:
                buckets[row["minute"]][0 if row["outcome"] == "SUCCESSFUL" else 1] += row["n"]
    return [(minute, ok, failed) for minute, (ok, failed) in buckets.items()]


def _stat_tables(backend, since=None):
    """The rows of ``backend`` (from ``since``) of both statistics tables: offload_series,
    and offload_stat, which workers of a release before migration 0015 count into during
    a rolling deploy (``LegacyStat``; it has no task path: ``task_path`` reads "")."""
    db = Deployment.current().database(backend)
    for model in (TaskStat, LegacyStat):
        rows = model.objects.using(db).filter(backend=backend)
        if model is LegacyStat:
            rows = rows.annotate(task_path=Value(""))
        yield rows.filter(minute__gte=since) if since is not None else rows


def _stat_sums(backend, by, since=None, **where):
    """Sums of the statistics' columns per ``by`` (a list of column names) of the rows
    that match ``where``, of both tables (``_stat_tables``): a list of rows, which may
    repeat a ``by``."""
    columns = ["tasks", "ran", "wait_sum", "run_sum"] + [
        name for kind in ("wait", "run") for name, _ in bucket_columns(kind)]
    return [row for rows in _stat_tables(backend, since)
            for row in rows.filter(**where).values(*by).annotate(
                **{f"sum_{c}": Sum(c) for c in columns})]


def _histograms(rows, key):
    """Merge ``_stat_sums`` rows into ``{key(row): {"ran", "wait", "wait_sum", "run", "run_sum"}}``;
    "wait" and "run" are ``[(upper bound, cumulative count)]``."""
    merged = {}
    for row in rows:
        if not row["sum_ran"]:
            continue
        h = merged.setdefault(key(row), {"ran": 0, "wait_sum": 0.0, "run_sum": 0.0,
                                         "wait": [[le, 0] for _, le in bucket_columns("wait")],
                                         "run": [[le, 0] for _, le in bucket_columns("run")]})
        h["ran"] += row["sum_ran"]
        for kind in ("wait", "run"):
            h[f"{kind}_sum"] += row[f"sum_{kind}_sum"]
            for bucket, (name, _) in zip(h[kind], bucket_columns(kind), strict=True):
                bucket[1] += row[f"sum_{name}"]
    return merged


def outcome_totals(backend="default"):
    """``{(queue, outcome): tasks}`` since the beginning (SUCCESSFUL, FAILED, RETRIED)."""
    totals = {}
    for r in _stat_sums(backend, ["queue_name", "outcome"]):
        if r["sum_tasks"]:
            key = (r["queue_name"], r["outcome"])
            totals[key] = totals.get(key, 0) + r["sum_tasks"]
    return totals


def histograms(backend="default"):
    """Wait and run histograms of finished tasks since the beginning, by (queue, band)."""
    return _histograms(_stat_sums(backend, ["queue_name", "priority"]),
                       lambda r: (r["queue_name"], band_of(r["priority"])))


def quantile(q, buckets, count):
    """Estimate the ``q`` quantile from cumulative ``[(upper bound, count)]`` buckets,
    interpolating linearly inside a bucket as Prometheus' histogram_quantile does."""
    rank, lower, below = q * count, 0.0, 0
    for le, n in buckets:
        if n >= rank:
            return lower + (le - lower) * ((rank - below) / (n - below) if n > below else 1.0)
        lower, below = le, n
    return lower  # beyond the last bound: report the last bound


def waits_by_band(backend="default"):
    """Wait before start (runnable → started) per priority band over the last hour:
    tasks, mean and estimated p50/p95 in ms, from the wait histograms."""
    since = now().replace(second=0, microsecond=0) - timedelta(minutes=59)
    by_band = _histograms(_stat_sums(backend, ["priority"], since=since),
                          lambda r: band_of(r["priority"]))
    result = []
    for name, _ in BANDS:
        h = by_band.get(name)
        if h:
            result.append({"band": name, "tasks": h["ran"], "mean_ms": h["wait_sum"] / h["ran"] * 1000,
                           "p50_ms": quantile(0.5, h["wait"], h["ran"]) * 1000,
                           "p95_ms": quantile(0.95, h["wait"], h["ran"]) * 1000})
    return result


def waiting(backend="default", limit=10):
    """The next runnable tasks, in claim order."""
    opts = task_backends[backend].opts
    rows = TaskRow.objects.using(Deployment.current().database(backend)).filter(
        backend=backend, status="READY", available_at__lte=now())
    if not opts.AGE_RATE:  # the ready index's condition and order: no sort
        rows = rows.filter(age_key__isnull=True, key_waiting=False)
    return list(rows.order_by("-priority", "fair_seq", "available_at", "id")[:limit])


def running(backend="default", limit=10):
    """The longest-running tasks (the few RUNNING rows, through offload_task_lease)."""
    return list(TaskRow.objects.using(Deployment.current().database(backend)).filter(
        backend=backend, status="RUNNING").order_by("last_attempted_at", "id")[:limit])


def schedules(backend="default"):
    """Every schedule of ``backend``: those of OPTIONS["PERIODIC"] (read-only), then the
    database ones; each with its next run (None: disabled or invalid) and last run."""
    from offload.scheduling.periodic import parse_schedules

    opts = task_backends[backend].opts
    at = now()
    rows = {r.name: r for r in Schedule.objects.using(Deployment.current().database(backend))
            .filter(backend=backend).order_by("name")}
    found = []
    for s in parse_schedules(opts.PERIODIC):
        row = rows.pop(s.name, None)
        found.append({"name": s.name, "task": s.task, "cron": s.cron, "timezone": s.timezone,
                      "source": Schedule.SETTINGS, "enabled": True, "next_run": s.following(at),
                      "last_run": row and row.last_run_at, "pk": row and row.pk, "error": None})
    for row in rows.values():
        if row.source != Schedule.DATABASE:
            continue  # a settings schedule no longer declared
        try:
            next_run, error = row.periodic().following(at) if row.enabled else None, None
        except ValueError as exc:
            next_run, error = None, str(exc)
        found.append({"name": row.name, "task": row.task, "cron": row.cron,
                      "timezone": row.timezone, "source": row.source, "enabled": row.enabled,
                      "next_run": next_run, "last_run": row.last_run_at, "pk": row.pk,
                      "error": error})
    return found


# -- workflows (docs/workflows.md) -------------------------------------------------------

def _step_counts(db, ids):
    """``{workflow id: {status: count}}`` for workflows ``ids`` (offload_task_workflow)."""
    counts = {}
    for workflow_id, status, n in (TaskRow.objects.using(db).filter(workflow_id__in=ids)
                                   .values_list("workflow_id", "status").annotate(n=Count("id"))
                                   .order_by()):
        counts.setdefault(workflow_id, {})[status] = n
    return counts


def workflows(backend="default", limit=10):
    """The latest workflows of ``backend``: name, when, status and steps by status."""
    from offload.models import Workflow

    db = Deployment.current().database(backend)
    rows = list(Workflow.objects.using(db).filter(backend=backend).order_by("-created_at", "-id")[:limit])
    counts = _step_counts(db, [w.pk for w in rows])
    found = []
    for w in rows:
        steps = counts.get(w.pk, {})
        found.append({"id": w.pk, "name": w.name, "created_at": w.created_at,
                      "status": status_of(steps) if steps else "SUCCESSFUL",
                      "steps": sum(steps.values()), "done": steps.get("SUCCESSFUL", 0),
                      "failed": steps.get("FAILED", 0)})
    return found


#: The graph shows a layer's steps one by one up to this many; more are one node per task.
GRAPH_STEPS = 12


def workflow_graph(backend, workflow_id):
    """A workflow's steps as layers for the dashboard's graph, or None if unknown: a
    step's layer is the longest path from a step with no dependencies. A layer of many
    steps (a group) is one node per task path with its counts by status. Returns
    ``{"workflow", "status", "layers": [[node]], "edges": [(node key, node key)],
    "steps": [row]}``, the step rows capped at 500 (in id order)."""
    from offload.models import Edge, Workflow

    db = Deployment.current().database(backend)
    workflow = Workflow.objects.using(db).filter(backend=backend, pk=workflow_id).first()
    if workflow is None:
        return None
    steps = list(TaskRow.objects.using(db).filter(workflow_id=workflow_id).order_by("id")
                 .values_list("id", "task_path", "status", "attempts"))
    parents = {}
    for parent, child in (Edge.objects.using(db).filter(
            child_id__in=TaskRow.objects.using(db).filter(workflow_id=workflow_id).values("id"))
            .values_list("parent_id", "child_id")):
        parents.setdefault(child, []).append(parent)
    layer = {}
    for id_, *_ in steps:  # ids follow the order steps were added: parents come first
        layer[id_] = 1 + max((layer.get(p, 0) for p in parents.get(id_, ())), default=-1)
    by_layer = {}
    for id_, path, status, _ in steps:
        by_layer.setdefault(layer[id_], []).append((id_, path, status))
    node_of, layers = {}, []
    for depth in sorted(by_layer):
        members, nodes = by_layer[depth], {}
        for id_, path, status in members:
            key = f"{depth}:{id_}" if len(members) <= GRAPH_STEPS else f"{depth}:{path}"
            node = nodes.setdefault(key, {"key": key, "task": path, "ids": [], "counts": {}})
            node["ids"].append(id_)
            node["counts"][status] = node["counts"].get(status, 0) + 1
            node_of[id_] = key
        for node in nodes.values():
            node["status"] = status_of(node["counts"])
        layers.append(list(nodes.values()))
    edges = sorted({(node_of[p], node_of[c]) for c, ps in parents.items() for p in ps
                    if p in node_of and c in node_of})
    counts = {}
    for _, _, status, _ in steps:
        counts[status] = counts.get(status, 0) + 1
    return {"workflow": workflow, "status": status_of(counts) if counts else "SUCCESSFUL",
            "counts": counts, "layers": layers, "edges": edges, "steps": steps[:500],
            "parents": parents}


# -- the task browser -------------------------------------------------------------------

#: What the browser's state filter offers, and the rows each means.
BROWSE_STATES = ("ready", "scheduled", "retrying", "running", "successful", "failed",
                 "cancelled", "waiting_key", "waiting_rate", "waiting_steps")


def _state_filter(state, at):
    from offload.results import CANCELLED

    ready = Q(status="READY")
    return {
        "ready": ready & Q(available_at__lte=at, key_waiting=False),
        "scheduled": ready & Q(available_at__gt=at, attempts=0, rate_paced=False),
        "retrying": ready & Q(attempts__gt=0, available_at__gt=at, rate_paced=False),
        "running": Q(status="RUNNING"),
        "successful": Q(status="SUCCESSFUL"),
        "failed": Q(status="FAILED") & ~Q(errors__contains=CANCELLED),
        "cancelled": Q(status="FAILED", errors__contains=CANCELLED),
        "waiting_key": ready & Q(key_waiting=True),
        "waiting_rate": ready & Q(rate_paced=True, available_at__gt=at),
        "waiting_steps": Q(status="BLOCKED"),
    }[state]


def matching(backend, *, state=None, queue=None, task=None, band=None, task_id=None,
             since=None, until=None, server=None, release=None):
    """``backend``'s tasks that match the browser's filters (every one optional: one of
    ``BROWSE_STATES``, a queue, a task path or its prefix ending in ".", a band, an id,
    enqueued at or after ``since`` and before ``until``, run by a server (an attempt's
    worker was one of its processes) or by any server of a release), without their
    large fields."""
    db = Deployment.current().database(backend)
    rows = TaskRow.objects.using(db).filter(backend=backend).defer(*LARGE_FIELDS)
    if server or release:
        servers = [server] if server else list(
            Server.objects.using(db).filter(release=release).values_list("id", flat=True)[:200])
        ran = Q(pk__in=[])
        for found in servers:  # worker ids are "<server id>-<n>-<hex>", comma-separated
            ran |= Q(worker_ids__startswith=f"{found}-") | Q(worker_ids__contains=f",{found}-")
        rows = rows.filter(ran)
    if state:
        rows = rows.filter(_state_filter(state, now()))
    if queue:
        rows = rows.filter(queue_name=queue)
    if task:
        rows = rows.filter(task_path__startswith=task) if task.endswith(".") else rows.filter(task_path=task)
    if band:
        low = dict(BANDS)[band]
        higher = [b for b, floor in BANDS if floor > low]
        rows = rows.filter(priority__gte=low)
        if higher:
            rows = rows.filter(priority__lt=dict(BANDS)[higher[-1]])
    if task_id is not None:
        rows = rows.filter(pk=task_id)
    if since:
        rows = rows.filter(enqueued_at__gte=since)
    if until:
        rows = rows.filter(enqueued_at__lt=until)
    return rows


#: The browser's orders: newest first (keyset pages), or the longest wait or run among
#: the newest SORT_SCAN matches (one page: sorting every match of a million would scan
#: them all).
SORTS = ("newest", "wait", "run")
SORT_SCAN = 10_000


def browse(backend, *, after=None, before=None, limit=50, sort="newest", **filters):
    """A page of ``backend``'s tasks that match ``filters`` (``matching``), newest
    first, by keyset: ``after`` (the last id of the page before: older tasks) or
    ``before`` (the first id of the page after: newer ones). Never an OFFSET, never a
    count of all matches. Returns ``(rows, older, newer)``: rows without their large
    fields, and the cursors of the pages around them (None: no such page). ``sort``
    "wait" or "run": the ``limit`` longest of the newest SORT_SCAN matches, one page."""
    rows = matching(backend, **filters)
    if sort != "newest":  # the newest SORT_SCAN matches' times, one index walk; sorted here
        start, end = (("available_at", "last_attempted_at") if sort == "wait"
                      else ("last_attempted_at", "finished_at"))
        times = rows.order_by("-id").values_list("id", start, end)[:SORT_SCAN]
        longest = sorted(((e - s).total_seconds(), id_) for id_, s, e in times if s and e)
        ids = [id_ for _, id_ in longest[::-1][:limit]]
        found = rows.in_bulk(ids)
        return [found[id_] for id_ in ids if id_ in found], None, None
    if before is not None:  # the newer page: the next ids up, shown newest first
        page = list(rows.filter(pk__gt=before).order_by("id")[:limit + 1])
        newer = page[limit].pk if len(page) > limit else None
        page = page[:limit][::-1]
        return page, (page[-1].pk if page else None), (page[0].pk if page and newer else None)
    if after is not None:
        rows = rows.filter(pk__lt=after)
    page = list(rows.order_by("-id")[:limit + 1])
    older = page[limit - 1].pk if len(page) > limit else None
    page = page[:limit]
    return page, older, (page[0].pk if page and after is not None else None)


# -- one task ---------------------------------------------------------------------------

def server_of(worker_id):
    """The server id of a worker id ("<server id>-<n>-<hex>", offload.worker)."""
    return worker_id.rsplit("-", 2)[0]


def task_detail(backend, pk):
    """Everything the task page shows about task ``pk``, or None: the row (without its
    large fields: ``payload_head``/``return_value_head`` clips), each attempt with its
    worker, server, role and release and its error (clipped tracebacks), its times and
    the wait and run they make, and its workflow's steps around it."""
    from offload.models import Edge, Workflow

    db = Deployment.current().database(backend)
    limit = ERRORS_READ_WHOLE * 4  # one task's page reads more than a list's row
    row = _with_errors(previewed(TaskRow.objects.using(db).filter(backend=backend, pk=pk)),
                       limit).first()
    if row is None:
        return None
    whole = _read_whole(row, limit)
    if whole:
        errors = [_clipped(e) for e in decode_errors(row.errors_whole)]
    else:  # too long to read: the last one, looked into by the database
        last = _last_error_in_database(db, pk)
        errors = [last] if last else []
    workers = [w for w in row.worker_ids.split(",") if w]
    servers = Server.objects.using(db).in_bulk({server_of(w) for w in workers})
    attempts = []
    for n, worker in enumerate(workers, 1):
        server = servers.get(server_of(worker))
        attempts.append({"n": n, "worker": worker, "server": server_of(worker),
                         "role": server and server.role, "release": server and server.release})
    # Errors are appended per failed attempt, so the first ones belong to the first
    # attempts; an attempt after the last error succeeded, runs or was lost.
    if whole:
        pairs = list(enumerate(errors, 1))
    else:  # only the last error was read: it is the last failed attempt's
        failed = len(workers) - (0 if row.status == "FAILED" else 1)
        pairs = [(failed, errors[0])] if errors and failed >= 1 else []
    for n, error in pairs:
        if n <= len(attempts):
            attempts[n - 1]["error"] = error
        else:  # failed without a claim (cancelled while READY, a dependency failed)
            attempts.append({"n": n, "worker": None, "error": error})
    times = _times(row)
    workflow, parents, children = None, [], []
    if row.workflow_id is not None:
        workflow = Workflow.objects.using(db).filter(pk=row.workflow_id).first()
        parents = list(Edge.objects.using(db).filter(child_id=pk).order_by("position")
                       .values_list("parent_id", flat=True)[:50])
        children = list(Edge.objects.using(db).filter(parent_id=pk).order_by("child_id")
                        .values_list("child_id", flat=True)[:50])
    return {"row": row, "band": band_of(row.priority), "attempts": attempts, "times": times,
            "payload": clip(row.payload_head, row.payload_length),
            "return_value": clip(row.return_value_head, row.return_value_length),
            "workflow": workflow, "parents": parents, "children": children}


def _times(row):
    """A task's moments, and the phases between them as bars on one axis (percent):
    before its first start (scheduled, waiting), its earlier attempts and their
    retries, its last attempt (ran, or running; now while it has not finished)."""
    at = now()
    end = row.finished_at or at
    moments = [(label, value) for label, value in (
        ("enqueued", row.enqueued_at), ("runnable", row.available_at),
        ("first start", row.started_at), ("last start", row.last_attempted_at),
        ("finished", row.finished_at)) if value is not None]
    phases = []
    if row.started_at is None:  # never started
        if row.available_at > row.enqueued_at:
            phases.append(("scheduled", row.enqueued_at, min(row.available_at, end)))
        if row.available_at < end:
            phases.append(("waiting", max(row.available_at, row.enqueued_at), end))
    else:
        phases.append(("waited", row.enqueued_at, row.started_at))
        last = row.last_attempted_at or row.started_at
        if row.status == "READY":  # retrying: between two attempts
            phases.append(("attempts and retries", row.started_at, end))
        else:
            if last > row.started_at:
                phases.append(("earlier attempts", row.started_at, last))
            phases.append(("ran" if row.finished_at else "running", last, end))
    phases = phases or [("waiting", row.enqueued_at, end)]
    start = phases[0][1]
    span = max((phases[-1][2] - start).total_seconds(), 0.001)
    bars = [{"label": label, "seconds": (stop - begin).total_seconds(),
             "left": round((begin - start).total_seconds() / span * 100, 2),
             "width": max(round((stop - begin).total_seconds() / span * 100, 2), 0.3)}
            for label, begin, stop in phases]
    return {"moments": moments, "bars": bars}


# -- per task path (offload_series) -------------------------------------------------------

#: The per-task table's windows: (name, minutes, the charts' bucket in minutes). Minutes
#: older than two hours are kept by the hour (offload.stats.KEEP_MINUTES), so the longer
#: windows are charted by the hour and start at an hour.
WINDOWS = (("15m", 15, 1), ("1h", 60, 1), ("6h", 360, 60), ("24h", 1440, 60), ("7d", 10080, 60))
#: The per-task table's columns that sort it: by name, or the others largest first.
TASK_SORTS = ("tasks", "failed", "failure_rate", "wait_p50", "wait_p95", "run_p50", "run_p95",
              "task")


def _window(name):
    found = {w[0]: w for w in WINDOWS}[name]
    since = now().replace(second=0, microsecond=0) - timedelta(minutes=found[1] - 1)
    if found[2] == 60:
        since = since.replace(minute=0)
    return since, found[2]


def _figures(h, counts):
    """A series' figures from its outcome counts and merged histograms (or None)."""
    done = counts.get("SUCCESSFUL", 0) + counts.get("FAILED", 0)
    figures = {"tasks": done, "failed": counts.get("FAILED", 0),
               "retried": counts.get("RETRIED", 0),
               "failure_rate": counts.get("FAILED", 0) / done if done else None}
    for kind in ("wait", "run"):
        for q in (50, 95):
            figures[f"{kind}_p{q}"] = (quantile(q / 100, h[kind], h["ran"]) if h and h["ran"]
                                       else None)
    return figures


def _figures_by(rows, key):
    """``{key(row): _figures}`` of ``_stat_sums`` rows: their outcome counts, and the
    percentiles of the timed ones (``_histograms`` leaves out untimed rows, such as
    every RETRIED one)."""
    hists = _histograms(rows, key)
    counts = {}
    for r in rows:
        by = counts.setdefault(key(r), {})
        by[r["outcome"]] = by.get(r["outcome"], 0) + (r["sum_tasks"] or 0)
    return {k: _figures(hists.get(k), c) for k, c in counts.items()}


def task_stats(backend, window="1h", sort="run_p95"):
    """Per task path over ``window`` (one of ``WINDOWS``), from offload_series alone:
    tasks finished, failed, retried, the failure rate, wait and run p50/p95 in seconds;
    sorted by ``sort`` (``TASK_SORTS``). Outcomes counted before per-task statistics
    (migration 0015) have no task path: they are one row, task ""."""
    since, _ = _window(window)
    rows = _stat_sums(backend, ["task_path", "outcome"], since=since)
    found = [{"task": path, **figures}
             for path, figures in _figures_by(rows, lambda r: r["task_path"]).items()]
    if sort == "task":
        return sorted(found, key=lambda f: f["task"])
    return sorted(found, key=lambda f: (f[sort] is None, -(f[sort] or 0), f["task"]))


def task_series(backend, task, window="1h"):
    """One task path's figures per bucket of ``window`` (a minute, or an hour for the
    longer windows): ``[(bucket start, figures)]``, every bucket, oldest first."""
    since, step = _window(window)
    rows = _stat_sums(backend, ["minute", "outcome"], since=since, task_path=task)

    def bucket(row):
        minute = row["minute"]
        return minute.replace(minute=0) if step == 60 else minute

    figures = _figures_by(rows, bucket)
    series, at, end = [], since, now()
    while at <= end:
        series.append((at, figures.get(at) or _figures(None, {})))
        at += timedelta(minutes=step)
    return series


def last_hour(backend, minutes=60):
    """The last hour by minute, per band and per queue, from one read of offload_series:
    ``(times, {band: [figures per minute]}, {queue: [figures per minute]})``
    (``_figures``: finished, failed, wait and run p50/p95)."""
    start = now().replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    rows = _stat_sums(backend, ["minute", "queue_name", "priority", "outcome"], since=start)
    times = [start + timedelta(minutes=i) for i in range(minutes)]

    def per(name_of, order):
        figures = _figures_by(rows, lambda r: (r["minute"], name_of(r)))
        names = sorted({name for _, name in figures}, key=order)
        return {name: [figures.get((t, name)) or _figures(None, {}) for t in times]
                for name in names}

    return (times, per(lambda r: band_of(r["priority"]), [b for b, _ in BANDS].index),
            per(lambda r: r["queue_name"], str))
