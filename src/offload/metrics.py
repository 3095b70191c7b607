"""Prometheus metrics, read from the database at scrape time.

Because every number comes from the shared database, it is right whichever process
serves the scrape and however many servers run. Counters add the totals that pruning
carried into ``offload_counter``, so they never go backwards. Include the view::

    path("offload/metrics", offload.metrics.view)

and protect it with ``OFFLOAD_METRICS_TOKEN`` (scrapers send ``Authorization: Bearer
<token>``); without a token only staff users may read it.
"""

import hmac

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.db.models.functions import Greatest
from django.http import HttpResponse, HttpResponseForbidden
from django.tasks import task_backends
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

from offload.backend import OffloadBackend
from offload.dashboard import queries
from offload.models import Counter, TaskRow


class OffloadCollector:
    def collect(self):
        depth = GaugeMetricFamily("offload_queue_depth", "Tasks by queue, priority band and state.",
                                  labels=["backend", "queue", "band", "state"])
        oldest = GaugeMetricFamily("offload_oldest_wait_seconds",
                                   "Wait of the oldest runnable task by queue and band.",
                                   labels=["backend", "queue", "band"])
        finished = CounterMetricFamily("offload_tasks_finished", "Tasks finished, by outcome.",
                                       labels=["backend", "queue", "status"])
        retries = CounterMetricFamily("offload_task_retries", "Attempts beyond the first.",
                                      labels=["backend", "queue"])
        for alias in task_backends.settings:
            backend = task_backends[alias]
            if not isinstance(backend, OffloadBackend):
                continue
            for row in queries.summary(alias):
                for state in ("ready", "scheduled", "running", "failed"):
                    depth.add_metric([alias, row["queue"], row["band"], state], row[state])
                if row["oldest_wait_s"] is not None:
                    oldest.add_metric([alias, row["queue"], row["band"]], row["oldest_wait_s"])
            totals = self._totals(alias, backend.opts.DATABASE)
            for (queue, name), value in sorted(totals.items()):
                if name == "retries":
                    retries.add_metric([alias, queue], value)
                else:
                    finished.add_metric([alias, queue, name], value)
        servers = GaugeMetricFamily("offload_servers", "Registered servers by role, release and state.",
                                    labels=["role", "release", "state"])
        counts = {}
        for server in queries.servers(include_gone=False):
            key = (server["role"], server["release"], server["state"])
            counts[key] = counts.get(key, 0) + 1
        for key, n in sorted(counts.items()):
            servers.add_metric(list(key), n)
        yield from (depth, oldest, finished, retries, servers)

    @staticmethod
    def _totals(alias, db):
        totals = {}
        rows = (TaskRow.objects.using(db).filter(backend=alias, status__in=["SUCCESSFUL", "FAILED"])
                .values("queue_name")
                .annotate(ok=Count("id", filter=Q(status="SUCCESSFUL")),
                          failed=Count("id", filter=Q(status="FAILED"))))
        for row in rows:  # only non-zero series, as the carried totals have
            for name, value in (("SUCCESSFUL", row["ok"]), ("FAILED", row["failed"])):
                if value:
                    totals[(row["queue_name"], name)] = value
        for row in (TaskRow.objects.using(db).filter(backend=alias, attempts__gt=1).values("queue_name")
                    .annotate(n=Sum(Greatest("attempts", 1) - 1))):
            totals[(row["queue_name"], "retries")] = row["n"]
        for c in Counter.objects.using(db).filter(backend=alias):
            totals[(c.queue_name, c.name)] = totals.get((c.queue_name, c.name), 0) + c.value
        return totals


def _allowed(request):
    token = getattr(settings, "OFFLOAD_METRICS_TOKEN", None)
    if token:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if hmac.compare_digest(sent.encode(), token.encode()):
            return True
    return bool(request.user and request.user.is_active and request.user.is_staff) \
        if hasattr(request, "user") else False


def view(request):
    if not _allowed(request):
        return HttpResponseForbidden("metrics: send Authorization: Bearer <OFFLOAD_METRICS_TOKEN> "
                                     "or sign in as staff\n")
    registry = CollectorRegistry()
    registry.register(OffloadCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
