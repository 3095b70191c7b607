"""``offload status [--watch [SECONDS]]``: queues by priority band, servers and recent
failures, drawn with rich; ``--watch`` redraws until Ctrl-C. Example::

    manage.py offload status --watch 5
    console.print(view("default"))     # the same tables, elsewhere
"""

from offload.commands.common import backend as offload_backend


def handle(command, *, backend, watch, **_):
    import time

    from rich.console import Console
    from rich.live import Live

    offload_backend(backend)
    console = Console(file=command.stdout, width=120)
    if not watch:
        console.print(view(backend))
        return
    try:
        with Live(view(backend), console=console, refresh_per_second=4) as live:
            while True:
                time.sleep(watch)
                live.update(view(backend))
    except KeyboardInterrupt:
        pass


def view(backend):
    """The three tables of ``backend``, as one rich renderable."""
    from rich.console import Group
    from rich.table import Table

    from offload.dashboard import queries
    from offload.templatetags.offload_format import format_duration

    queues = Table(title=f"Queues ({backend})", expand=False)
    for col in ("queue", "band", "ready", "on a key", "on a rate", "on steps", "scheduled",
                "running", "failed", "oldest wait", "state"):
        queues.add_column(col, justify="left" if col in ("queue", "band", "state") else "right")
    for row in queries.summary(backend):
        wait = row["oldest_wait_s"]
        queues.add_row(row["queue"], row["band"], str(row["ready"]), str(row["waiting_key"]),
                       str(row["waiting_rate"]), str(row["waiting_steps"]), str(row["scheduled"]),
                       str(row["running"]), str(row["failed"]),
                       "-" if wait is None else format_duration(wait),
                       "[yellow]paused[/]" if row["paused"] else "active")
    servers = Table(title="Servers")
    for col in ("server", "role", "release", "state", "heartbeat"):
        servers.add_column(col)
    for s in queries.servers():
        servers.add_row(s["id"], s["role"], s["release"], s["state"], f"{format_duration(s['heartbeat_age_s'])} ago")
    failed = Table(title="Recent failures")
    for col in ("id", "task", "finished", "error"):
        failed.add_column(col)
    for row in queries.failures(backend, limit=5):  # never reads the large fields whole
        last = row.last_error["exception_class_path"] if row.last_error else ""
        failed.add_row(str(row.pk), row.task_path, f"{row.finished_at:%H:%M:%S}", last)
    flows = queries.workflows(backend, limit=5)
    if not flows:
        return Group(queues, servers, failed)
    workflows = Table(title="Latest workflows")
    for col in ("id", "name", "started", "status", "steps done"):
        workflows.add_column(col, justify="right" if col == "steps done" else "left")
    for w in flows:
        workflows.add_row(str(w["id"]), w["name"], f"{w['created_at']:%H:%M:%S}", w["status"],
                          f"{w['done']}/{w['steps']}" + (f" ({w['failed']} failed)" if w["failed"] else ""))
    return Group(queues, servers, failed, workflows)
