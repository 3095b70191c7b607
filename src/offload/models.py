"""The task table. The ORM serves admin, dashboard and tooling; the hot path
(enqueue, claim, complete) is SQL in ``offload.store``.

``TaskRow`` holds one ``django.tasks`` TaskResult per row. ``status`` uses
Django's ``TaskResultStatus`` values verbatim.
"""

import json

from django.db import models
from django.tasks import TaskResultStatus

from offload.results import BLOCKED
from offload.scheduling.periodic import parse_schedule
from offload.stats import bucket_columns

STATUS_CHOICES = [*TaskResultStatus.choices, (BLOCKED, "Blocked")]


class TaskRow(models.Model):
    id = models.BigAutoField(primary_key=True)
    backend = models.CharField(max_length=64)
    queue_name = models.CharField(max_length=100)
    priority = models.SmallIntegerField()
    task_path = models.CharField(max_length=255)
    #: ``{"args": [...], "kwargs": {...}}`` as JSON text.
    payload = models.TextField()
    #: Django's TaskResultStatus, or BLOCKED: a workflow step waiting for the steps it
    #: depends on (its TaskResult says READY; docs/workflows.md).
    status = models.CharField(max_length=10, choices=STATUS_CHOICES)
    enqueued_at = models.DateTimeField()
    #: When the task (next) becomes runnable: ``run_after``, enqueue time, or retry time.
    available_at = models.DateTimeField()
    run_after = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: Times the task was claimed by a worker.
    attempts = models.IntegerField(default=0)
    #: Times the task was taken back from a dead or frozen worker.
    rescues = models.IntegerField(default=0)
    #: Comma-separated worker ids, one per attempt.
    worker_ids = models.TextField(default="", blank=True)
    #: JSON list of ``{"exception_class_path": ..., "traceback": ...}``.
    errors = models.TextField(default="[]")
    #: JSON text of the return value (SUCCESSFUL only).
    return_value = models.TextField(null=True, blank=True)
    #: Claim token: only the current holder may record the outcome.
    lease_token = models.BigIntegerField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=100, null=True, blank=True)
    #: Optional key: no two READY/RUNNING tasks of a backend share it.
    unique_key = models.CharField(max_length=255, null=True, blank=True)
    #: ``priority - AGE_RATE * epoch(available_at)`` while the task is ageing; NULL when
    #: ageing is off or the task reached AGE_CAP (see store/sql/postgres/picked.sql).
    age_key = models.FloatField(null=True, blank=True)
    #: Flow control (docs/flow-control.md): at most ``concurrency_limit`` tasks holding
    #: this key run at once on every server together; NULL: no key.
    concurrency_key = models.CharField(max_length=255, null=True, blank=True)
    concurrency_limit = models.IntegerField(null=True, blank=True)
    #: Set when the RUNNING task was asked to stop (``offload.cancel``): the JSON error
    #: entry (a Cancelled) its worker records; see docs/flow-control.md.
    cancel_error = models.TextField(null=True, blank=True)
    #: READY, but set aside while its concurrency key is full: out of the claim's
    #: indexes until the key has room (docs/flow-control.md#concurrency-keys).
    key_waiting = models.BooleanField(default=False, db_default=False)
    #: Rate limits (docs/flow-control.md#rate-limits): the task's token bucket, its
    #: seconds per task and burst; NULL: not rate-limited.
    rate_key = models.CharField(max_length=255, null=True, blank=True)
    rate_interval = models.FloatField(null=True, blank=True)
    rate_burst = models.IntegerField(null=True, blank=True)
    #: Given its token by a claim that found the bucket empty: available_at is its
    #: turn, and the claim takes it then without another token.
    rate_paced = models.BooleanField(default=False, db_default=False)
    #: Fair sharing (docs/flow-control.md#fair-sharing): the key's turn within its
    #: priority, the claim's order before available_at; 0 without a fair key.
    fair_key = models.CharField(max_length=255, null=True, blank=True)
    fair_seq = models.BigIntegerField(default=0, db_default=0)
    #: Workflows (docs/workflows.md): the workflow this task is a step of, and how many
    #: of the steps it depends on have still to succeed (BLOCKED while above 0).
    #: Nullable, so that adding them never rebuilds the table.
    workflow_id = models.BigIntegerField(null=True, blank=True)
    deps_left = models.IntegerField(null=True, blank=True)

    class Meta:
        app_label = "offload"  # importable, and so diagnosable, without the app installed
        db_table = "offload_task"
        verbose_name = "task"
        indexes = [
            # The claim walks this index in order: ready rows that are not ageing (ageing
            # off, or at their cap), highest priority first.
            models.Index(
                fields=["backend", "-priority", "fair_seq", "available_at", "id"],
                condition=models.Q(status="READY", age_key__isnull=True, key_waiting=False),
                name="offload_task_ready",
            ),
            # Rescue, hand-back and heartbeats look only at running rows (a small set).
            models.Index(
                fields=["lease_expires_at"], condition=models.Q(status="RUNNING"),
                name="offload_task_lease",
            ),
            # Tasks still gaining priority with age, in effective-priority order...
            models.Index(
                fields=["backend", "-age_key", "id"],
                condition=models.Q(status="READY", age_key__isnull=False, key_waiting=False),
                name="offload_task_ageing",
            ),
            # ...and by age, so maintenance finds the ones that reached their cap.
            models.Index(
                fields=["backend", "available_at"],
                condition=models.Q(status="READY", age_key__isnull=False, key_waiting=False),
                name="offload_task_aged_out",
            ),
            # Pruning. Partial, so claiming a task does not add an entry here.
            models.Index(
                fields=["finished_at"], condition=models.Q(status__in=["SUCCESSFUL", "FAILED"]),
                name="offload_task_finished",
            ),
            # The queue summary (dashboard, status, metrics) counts waiting and failed
            # tasks by queue and priority from this index alone, never reading finished
            # rows. RUNNING is left out so that a claim adds no entry here; the few
            # running rows are found through offload_task_lease.
            models.Index(
                fields=["backend", "status", "queue_name", "priority", "available_at"],
                condition=models.Q(status__in=["READY", "FAILED"]),
                name="offload_task_pending",
            ),
            # Failed tasks, latest first (the dashboard's failures, the browser's failed
            # and cancelled, a bulk retry's count): a few rows, written when a task
            # fails for good, so neither claims nor successes touch it.
            models.Index(
                fields=["backend", "finished_at"], condition=models.Q(status="FAILED"),
                name="offload_task_failed",
            ),
            # How many tasks holding a concurrency key run (the claim's admission count).
            models.Index(
                fields=["backend", "concurrency_key"],
                condition=models.Q(status="RUNNING", concurrency_key__isnull=False),
                name="offload_task_key_running",
            ),
            # A key's READY tasks, best first: set aside when the key fills, the best
            # taken back when it has room, and the keys that have some set aside.
            models.Index(
                fields=["backend", "concurrency_key", "key_waiting", "-priority", "available_at", "id"],
                condition=models.Q(status="READY", concurrency_key__isnull=False),
                name="offload_task_key_ready",
            ),
            # The keys that have tasks set aside (maintenance's net, a few rows).
            models.Index(
                fields=["backend", "concurrency_key"],
                condition=models.Q(status="READY", key_waiting=True),
                name="offload_task_key_waiting",
            ),
            # A rate-limited bucket's tasks without a turn yet, best first: a claim that
            # finds the bucket empty gives each its turn (rate_paced).
            models.Index(
                fields=["backend", "rate_key", "-priority", "available_at", "id"],
                condition=models.Q(status="READY", rate_key__isnull=False, rate_paced=False),
                name="offload_task_unpaced",
            ),
            # Tasks waiting for their turn: the next turn (a worker wakes for it) and the
            # count "waiting on a rate limit".
            models.Index(
                fields=["backend", "available_at"],
                condition=models.Q(status="READY", rate_paced=True),
                name="offload_task_paced",
            ),
            # A fair key's last turn among its READY tasks (enqueue gives the next).
            models.Index(
                fields=["backend", "fair_key", "-fair_seq"],
                condition=models.Q(status="READY", fair_key__isnull=False),
                name="offload_task_fair",
            ),
            # A workflow's steps (get_workflow, cancel, prune) and the blocked ones by
            # queue (the summary): rows that are not steps are in neither.
            models.Index(
                fields=["workflow_id", "id"], condition=models.Q(workflow_id__isnull=False),
                name="offload_task_workflow",
            ),
            models.Index(
                fields=["backend", "queue_name", "priority"], condition=models.Q(status=BLOCKED),
                name="offload_task_blocked",
            ),
            # Tasks asked to stop: maintenance fails the ones that went back to READY.
            models.Index(
                fields=["backend"], condition=models.Q(cancel_error__isnull=False),
                name="offload_task_stopping",
            ),
        ]

        constraints = [
            models.UniqueConstraint(
                fields=["backend", "unique_key"],
                condition=models.Q(status__in=["READY", "RUNNING"], unique_key__isnull=False),
                name="offload_task_unique_pending",
            ),
        ]

    def __str__(self):
        return f"{self.task_path} #{self.pk} ({self.status})"


class Workflow(models.Model):
    """A workflow (docs/workflows.md): steps are ordinary task rows with its id in
    ``workflow_id``; what it depends on is in ``offload_edge``. Its state is its steps'."""

    id = models.BigAutoField(primary_key=True)
    backend = models.CharField(max_length=64)
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        app_label = "offload"
        db_table = "offload_workflow"
        indexes = [models.Index(fields=["backend", "-created_at"], name="offload_workflow_recent")]

    def __str__(self):
        return f"workflow {self.pk}{f' {self.name}' if self.name else ''}"


class Edge(models.Model):
    """``child`` waits for ``parent`` to succeed; ``position`` orders the results a
    step receives (its dependencies in the order they were given)."""

    id = models.BigAutoField(primary_key=True)
    parent_id = models.BigIntegerField()
    child_id = models.BigIntegerField()
    position = models.IntegerField()

    class Meta:
        app_label = "offload"
        db_table = "offload_edge"
        indexes = [
            # A finished step's dependents (the bookkeeping in its completion's transaction).
            models.Index(fields=["parent_id"], name="offload_edge_parent"),
            # A step's dependencies in order (the results it receives).
            models.Index(fields=["child_id", "position"], name="offload_edge_child"),
        ]

    def __str__(self):
        return f"{self.parent_id} -> {self.child_id}"


class ConcurrencyKey(models.Model):
    """PostgreSQL: a row per concurrency key that claims lock, so that two servers never
    both see room for a key's last slot (``offload_admit``, migration 0010). It
    holds no count: the count is of the key's RUNNING tasks. Maintenance deletes the
    rows of keys that no task runs. Unused on SQLite, whose single writer
    serialises claims."""

    backend = models.CharField(max_length=64)
    key = models.CharField(max_length=255)

    class Meta:
        app_label = "offload"
        db_table = "offload_key"
        constraints = [models.UniqueConstraint(fields=["backend", "key"], name="offload_key_unique")]

    def __str__(self):
        return f"{self.backend}/{self.key}"


class RateBucket(models.Model):
    """A rate limit's token bucket (docs/flow-control.md#rate-limits), kept as GCRA's
    theoretical arrival times, in epoch seconds. ``tat``: when the tokens given out so
    far (starts and turns) are paid off; a task without a turn takes a token while
    ``tat - (burst - 1) * interval <= now``. ``started``: the same for the starts
    alone, as claimed; every task, with a turn or not, also needs
    ``started - interval / 4 - (burst - 1) * interval <= now``, so turns that fall due
    together after late claims still start apart. A claim locks the row (PostgreSQL)
    or runs under SQLite's single writer."""

    backend = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    tat = models.FloatField()
    started = models.FloatField(default=0.0, db_default=0.0)

    class Meta:
        app_label = "offload"
        db_table = "offload_bucket"
        constraints = [models.UniqueConstraint(fields=["backend", "key"], name="offload_bucket_unique")]

    def __str__(self):
        return f"{self.backend}/{self.key}"


class QueueState(models.Model):
    """Per-queue switches shared by every server: a paused queue is not claimed from."""

    backend = models.CharField(max_length=64)
    queue_name = models.CharField(max_length=100)
    paused = models.BooleanField(default=False)
    changed_at = models.DateTimeField()

    class Meta:
        app_label = "offload"
        db_table = "offload_queue"
        constraints = [models.UniqueConstraint(fields=["backend", "queue_name"], name="offload_queue_unique")]

    def __str__(self):
        return f"{self.backend}/{self.queue_name}{' (paused)' if self.paused else ''}"


def _json_or(text, name):
    """A schedule's ``args`` or ``kwargs`` from its JSON text, or ValueError saying so."""
    try:
        return json.loads(text or ("[]" if name == "args" else "{}"))
    except ValueError:
        raise ValueError(f"{name} {text[:60]!r} is not JSON: write a list such as [42] or an "
                         'object such as {"days": 7}.') from None


class Schedule(models.Model):
    """A periodic schedule and the last occurrence of it that was enqueued (one row per
    schedule). ``source`` "settings": declared in ``OPTIONS["PERIODIC"]``, its
    definition copied here by the servers for display (read-only); "database": made
    in the admin, edited while the servers run, which read it at every maintenance
    tick (docs/operations.md#schedules)."""

    SETTINGS, DATABASE = "settings", "database"

    backend = models.CharField(max_length=64)
    name = models.CharField(max_length=100)
    last_run_at = models.DateTimeField()
    source = models.CharField(max_length=10, default=SETTINGS, db_default=SETTINGS,
                              choices=[(SETTINGS, "settings"), (DATABASE, "database")])
    task = models.CharField(max_length=255, blank=True, default="", db_default="",
                            help_text="The task's dotted path, such as loans.tasks.nightly_report.")
    cron = models.CharField(max_length=100, blank=True, default="", db_default="",
                            help_text="Five fields (minute hour day month weekday), such as "
                                      "0 2 * * *; a sixth adds seconds.")
    timezone = models.CharField(max_length=64, default="UTC", db_default="UTC",
                                help_text="An IANA name, such as Europe/Paris.")
    #: JSON text, as a task's payload (a JSONField would make every system check query
    #: each SQLite database for its JSON support).
    args = models.TextField(default="[]", db_default="[]", help_text="A JSON list, such as [42].")
    kwargs = models.TextField(default="{}", db_default="{}",
                              help_text='A JSON object, such as {"days": 7}.')
    priority = models.SmallIntegerField(null=True, blank=True,
                                        help_text="Empty: the task's own.")
    queue_name = models.CharField(max_length=100, null=True, blank=True,
                                  help_text="Empty: the task's own.")
    missed = models.CharField(max_length=4, default="once", db_default="once",
                              choices=[("once", "once: after downtime, the latest missed occurrence once"),
                                       ("skip", "skip: only occurrences noticed within a minute")])
    enabled = models.BooleanField(default=True, db_default=True)
    #: When the definition last changed: the servers rebuild a changed schedule.
    changed_at = models.DateTimeField(null=True, blank=True)

    def spec(self):
        """The definition as ``OPTIONS["PERIODIC"]`` holds one."""
        spec = {"task": self.task, "cron": self.cron, "timezone": self.timezone,
                "args": _json_or(self.args, "args"), "kwargs": _json_or(self.kwargs, "kwargs"),
                "missed": self.missed}
        spec.update({k: v for k, v in (("priority", self.priority),
                                       ("queue_name", self.queue_name or None)) if v is not None})
        return spec

    def periodic(self):
        """The schedule (``offload.scheduling.periodic.Periodic``), or ValueError naming
        what is wrong with its definition."""
        where = f"schedule {self.name!r}"
        try:
            spec = self.spec()
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        return parse_schedule(self.name, spec, where=where)

    @staticmethod
    def definition(periodic):
        """The fields holding ``periodic``'s definition (a settings schedule's copy)."""
        return {"task": periodic.task, "cron": periodic.cron, "timezone": periodic.timezone,
                "args": json.dumps(list(periodic.args)), "kwargs": json.dumps(dict(periodic.kwargs)),
                "priority": periodic.priority, "queue_name": periodic.queue_name,
                "missed": periodic.missed}

    class Meta:
        app_label = "offload"
        db_table = "offload_schedule"
        constraints = [models.UniqueConstraint(fields=["backend", "name"], name="offload_schedule_unique")]

    def __str__(self):
        return f"{self.backend}/{self.name} @ {self.last_run_at:%Y-%m-%d %H:%M}"


class Server(models.Model):
    """A running process of the codebase (an async server, or a web server started by
    ``offload run``): who it is, which release, and whether it may still take work."""

    RUNNING, RETIRING, STOPPED, DEAD = "running", "retiring", "stopped", "dead"

    id = models.CharField(max_length=100, primary_key=True)  # host-pid
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    role = models.CharField(max_length=50)
    release = models.CharField(max_length=100)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    #: running; retiring (told to finish its work and exit); stopped; dead (no heartbeat).
    #: Only a running server's workers may claim tasks (see store/sql/common/claimable.sql).
    state = models.CharField(max_length=10, default=RUNNING)

    class Meta:
        app_label = "offload"
        db_table = "offload_server"
        ordering = ["role", "release", "id"]

    def __str__(self):
        return f"{self.id} ({self.role}, {self.release}, {self.state})"


class _Counted(models.Model):
    """The columns both statistics tables share: a series (backend, minute, worker,
    queue, priority, outcome) and its counts; the histogram buckets are added below."""

    backend = models.CharField(max_length=64)
    minute = models.DateTimeField()
    #: The worker process that recorded these outcomes; "" for maintenance, actions, totals.
    worker = models.CharField(max_length=100, blank=True)
    queue_name = models.CharField(max_length=100)
    priority = models.SmallIntegerField()
    outcome = models.CharField(max_length=10)
    tasks = models.BigIntegerField(default=0)
    #: Observations in the histograms (tasks a worker ran to this outcome).
    ran = models.BigIntegerField(default=0)
    wait_sum = models.FloatField(default=0.0)
    run_sum = models.FloatField(default=0.0)

    class Meta:
        abstract = True


class TaskStat(_Counted):
    """Outcomes counted as they are recorded (table ``offload_series``): one row per
    worker process, minute, queue, priority, task path and outcome, written in the
    statement (PostgreSQL) or transaction (SQLite) that records the outcomes, so it
    always agrees with them. Keyed by the worker so that no two workers ever update one
    row. Maintenance folds minutes older than two hours into each series' row per hour
    (``worker = offload.stats.HOURS_WORKER``), and hours older than eight days into its
    totals row (``minute = offload.stats.TOTALS_MINUTE``, ``worker = ""``), so sums over
    the table never go backwards.

    ``outcome`` is SUCCESSFUL, FAILED or RETRIED (an attempt that failed, or whose
    worker was lost, and will run again). The histograms observe tasks that a worker
    finished: wait = the last attempt's start − when the task became runnable
    (``last_attempted_at − available_at``; for a task run once, ``started_at −
    available_at``), run = ``finished_at − last_attempted_at``. Cancelled tasks and
    tasks failed by the rescuer count but are not timed.
    """

    #: The task's path; "" for what was counted before migration 0015 (per queue only).
    task_path = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        app_label = "offload"
        db_table = "offload_series"
        verbose_name = "task statistic"
        constraints = [
            # The upsert's conflict target; also serves "the last hour" (backend, minute).
            models.UniqueConstraint(
                fields=["backend", "minute", "worker", "queue_name", "priority", "task_path",
                        "outcome"],
                name="offload_series_unique"),
        ]

    def __str__(self):
        return (f"{self.backend}/{self.queue_name}/{self.priority}/{self.task_path} "
                f"{self.outcome} @ {self.minute}: {self.tasks}")


class LegacyStat(_Counted):
    """``offload_stat``, what workers of releases before migration 0015 count into (per
    queue and priority, without the task path). Kept for them during a rolling deploy:
    their statements name this table and its conflict target. Maintenance moves its
    rows into ``offload_series`` (``task_path = ""``), so it holds nothing once they are
    gone; a later release drops it."""

    class Meta:
        app_label = "offload"
        db_table = "offload_stat"
        constraints = [
            models.UniqueConstraint(
                fields=["backend", "minute", "worker", "queue_name", "priority", "outcome"],
                name="offload_stat_unique"),
        ]


for _kind in ("wait", "run"):
    for _column, _ in bucket_columns(_kind):
        TaskStat.add_to_class(_column, models.BigIntegerField(default=0))
        LegacyStat.add_to_class(_column, models.BigIntegerField(default=0))
