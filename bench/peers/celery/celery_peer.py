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

if os.environ.get("PEER_PRIORITY"):
    # celery_priority.py: Celery's documented Redis priority set-up ("Redis Message
    # Priorities" in the Routing guide): one list per level 0-9 (0 = highest),
    # consumed in priority order; late ack and prefetch multiplier 1 so that a
    # worker holds no more messages than it is running.
    app.conf.update(
        broker_transport_options={"priority_steps": list(range(10)), "sep": ":",
                                  "queue_order_strategy": "priority"},
        task_acks_late=True,
        worker_prefetch_multiplier=1,
    )


@app.task
def noop():
    return None


@app.task
def probe():
    """Return the wall-clock time at which the task body started running."""
    return time.time()


@app.task(ignore_result=True)
def low_work():
    """Priority benchmark backlog task: 20 ms of (sleeping) work, no result stored."""
    time.sleep(0.02)


@app.task
def urgent_work():
    """Priority benchmark urgent task: the same 20 ms; returns when its body started."""
    started = time.time()
    time.sleep(0.02)
    return started
