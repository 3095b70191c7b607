"""Prometheus metrics, read from the database at scrape time.

Because every number comes from the shared database, it is right whichever process
serves the scrape and however many servers run. Counters and the wait/run histograms
sum ``offload_series`` (``offload.models.TaskStat``), which the workers write as they
record outcomes and which keeps its old minutes as totals, so they never go backwards
when tasks or old statistics are pruned. Include the view::

    path("offload/metrics", offload.metrics.view)

and protect it with a token, ``OFFLOAD_METRICS_TOKEN``: the environment variable, or
else the setting of that name (the environment wins, so each deploy sets its own);
scrapers send ``Authorization: Bearer <token>``. Without the token only staff users
with the permission ``offload.view_taskrow`` may read it.
"""

import hmac
import os

from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from offload.dashboard import queries
from offload.dashboard.actions import may_view
from offload.deployment import Deployment

__all__ = ["OffloadCollector", "token", "view"]


class OffloadCollector:
    def collect(self):
        depth = GaugeMetricFamily("offload_queue_depth", "Tasks by queue, priority band and state.",
                                  labels=["backend", "queue", "band", "state"])
        oldest = GaugeMetricFamily("offload_oldest_wait_seconds",
                                   "Wait of the oldest runnable task by queue and band.",
                                   labels=["backend", "queue", "band"])
        finished = CounterMetricFamily("offload_tasks_finished", "Tasks finished, by outcome.",
                                       labels=["backend", "queue", "status"])
        retries = CounterMetricFamily("offload_task_retries",
                                      "Attempts that failed, or lost their worker, and were queued again.",
                                      labels=["backend", "queue"])
        waits = HistogramMetricFamily(
            "offload_task_wait_seconds",
            "Runnable to started (the last attempt), of tasks a worker finished.",
            labels=["backend", "queue", "band"])
        runs = HistogramMetricFamily("offload_task_run_seconds",
                                     "Started to finished (the last attempt), of tasks a worker finished.",
                                     labels=["backend", "queue", "band"])
        for alias in Deployment.current().backends:
            for row in queries.summary(alias):
                for state in queries.STATES:
                    depth.add_metric([alias, row["queue"], row["band"], state], row[state])
                if row["oldest_wait_s"] is not None:
                    oldest.add_metric([alias, row["queue"], row["band"]], row["oldest_wait_s"])
            for (queue, outcome), n in sorted(queries.outcome_totals(alias).items()):
                if outcome == "RETRIED":
                    retries.add_metric([alias, queue], n)
                else:
                    finished.add_metric([alias, queue, outcome], n)
            for (queue, band), h in sorted(queries.histograms(alias).items()):
                for family, kind in ((waits, "wait"), (runs, "run")):
                    buckets = [(floatToGoString(le), n) for le, n in h[kind]] + [("+Inf", h["ran"])]
                    family.add_metric([alias, queue, band], buckets, h[f"{kind}_sum"])
        servers = GaugeMetricFamily("offload_servers", "Registered servers by role, release and state.",
                                    labels=["role", "release", "state"])
        counts = {}
        for server in queries.servers(include_gone=False):
            key = (server["role"], server["release"], server["state"])
            counts[key] = counts.get(key, 0) + 1
        for key, n in sorted(counts.items()):
            servers.add_metric(list(key), n)
        yield from (depth, oldest, finished, retries, waits, runs, servers)


def token():
    """``$OFFLOAD_METRICS_TOKEN`` if set and not empty, else ``settings.OFFLOAD_METRICS_TOKEN``."""
    return os.environ.get("OFFLOAD_METRICS_TOKEN") or getattr(settings, "OFFLOAD_METRICS_TOKEN", None)


def _allowed(request):
    token_ = token()
    if token_:
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        # The scheme is case-insensitive (RFC 9110); the token alone is not accepted.
        if scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token_.encode()):
            return True
    user = getattr(request, "user", None)
    return bool(user and user.is_active and user.is_staff and may_view(user))


def view(request):
    if not _allowed(request):
        return HttpResponseForbidden("metrics: send Authorization: Bearer <OFFLOAD_METRICS_TOKEN> "
                                     "or sign in as staff with the permission offload.view_taskrow\n",
                                     content_type="text/plain; charset=utf-8")
    registry = CollectorRegistry()
    registry.register(OffloadCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
