"""Celery app for the peer benchmark: Redis db 15 as broker and result backend."""

import os
import time

from celery import Celery

REDIS_URL = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/15")

app = Celery("celery_peer", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=False,  # results are needed to verify every task
    result_expires=3600,
    task_acks_late=False,  # default: ack on receipt, one round trip fewer per task
    worker_prefetch_multiplier=int(os.environ.get("PEER_PREFETCH", "64")),
    worker_disable_rate_limits=True,  # "Optimizing" guide: no rate-limit bookkeeping
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
)


@app.task
def noop():
    return None


@app.task
def probe():
    """Return the wall-clock time at which the task body started running."""
    return time.time()
