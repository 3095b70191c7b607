"""Typed backend ``OPTIONS`` with defaults and validation.

Implemented by :class:`Options`, built once per backend from
``TASKS[alias]["OPTIONS"]``. Example::

    TASKS = {"default": {
        "BACKEND": "offload.backend.OffloadBackend",
        "QUEUES": ["default", "emails"],
        "OPTIONS": {"DATABASE": "default", "LEASE_SECONDS": 30, "RETAIN": "7d"},
    }}

Every key is documented in ``docs/configuration.md``.
"""

import re
from dataclasses import dataclass, field, fields
from datetime import timedelta
from functools import cached_property

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from offload.suggest import did_you_mean

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value, *, name="duration"):
    """Seconds from ``30``, ``"30s"``, ``"15m"``, ``"7d"`` or a ``timedelta``."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(
            f"{name}={value!r} is not a duration: use seconds (30) or a string "
            "such as '30s', '15m', '12h' or '7d'."
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|m|h|d)\s*$")
#: The largest burst of a rate limit (tasks that may start at once after a pause).
MAX_BURST = 10_000


def parse_rate(value, *, name="rate_limit"):
    """Seconds per task (the token interval) from ``"20/s"``, ``"100/m"``, ``"5/h"``,
    ``"1/10s"`` or ``"3/d"`` (docs/flow-control.md#rate-limits)."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if not match or float(match.group(1)) <= 0 or float(match.group(2) or 1) <= 0:
        raise ValueError(
            f"{name}={value!r} is not a rate: use a string such as '20/s', '100/m', '5/h' "
            "or '1/10s' (tasks per period).")
    count, period = float(match.group(1)), float(match.group(2) or 1) * _UNITS[match.group(3)]
    return period / count


def parse_burst(value, *, name="rate_burst"):
    """A rate limit's burst: a whole number of tasks from 1 to MAX_BURST."""
    if type(value) is not int or not 1 <= value <= MAX_BURST:
        raise ValueError(f"{name}={value!r}: use a whole number from 1 to {MAX_BURST:,} (how many "
                         "tasks may start at once after a pause; 1: evenly spaced).")
    return value


def parse_queue_rates(raw):
    """``OPTIONS["RATE_LIMITS"]`` as ``{queue: (interval, burst)}``: each value is a rate
    (``"100/m"``) or ``{"rate": "100/m", "burst": 10}``."""
    rates = {}
    for queue, value in raw.items():
        where = f"RATE_LIMITS[{queue!r}]"
        if isinstance(value, dict):
            unknown = set(value) - {"rate", "burst"}
            if unknown or "rate" not in value:
                raise ValueError(f"{where}={value!r}: use a rate such as '100/m' or "
                                 "{'rate': '100/m', 'burst': 10}.")
            rates[queue] = (parse_rate(value["rate"], name=where),
                            parse_burst(value.get("burst", 1), name=f"{where}['burst']"))
        else:
            rates[queue] = (parse_rate(value, name=where), 1)
    return rates


@dataclass(frozen=True)
class Options:
    #: Database alias that holds the task table.
    DATABASE: str = "default"
    #: How long a claim stays valid without a heartbeat.
    LEASE_SECONDS: float = 30.0
    #: How often a worker process renews its leases (default: a third of the lease).
    HEARTBEAT_SECONDS: float | None = None
    #: Longest idle sleep between claim attempts (NOTIFY or data_version wake earlier).
    POLL_SECONDS: float = 0.25
    #: PostgreSQL: how a worker hears of new tasks. True: LISTEN over the task
    #: database's own connection settings; a DATABASES alias: over that alias's (a
    #: direct connection to the same database, when the task database is reached
    #: through a transaction pooler such as PgBouncer, where LISTEN does not work);
    #: False: no LISTEN, poll every POLL_SECONDS.
    LISTEN: bool | str = True
    #: Finished tasks older than this are deleted by the async server (None: keep).
    RETAIN: float | None = None
    #: A task whose process died this many times is failed with WorkerLost.
    MAX_RESCUES: int = 5
    #: Ageing: a waiting task gains AGE_RATE priority points per second, up to AGE_CAP.
    AGE_RATE: float = 0.0
    AGE_CAP: int = 100
    #: Cluster-wide concurrency limit per queue: {"crm": 3}.
    QUEUE_LIMITS: dict = field(default_factory=dict)
    #: Cluster-wide rate limit per queue: {"crm": "100/m"} or {"crm": {"rate": "100/m",
    #: "burst": 10}}, for the queue's tasks without a rate limit of their own.
    RATE_LIMITS: dict = field(default_factory=dict)
    #: Periodic tasks: {"name": {"task": "app.tasks.f", "cron": "0 2 * * *", ...}}.
    PERIODIC: dict = field(default_factory=dict)
    #: Default per-task options (the task decorator's keyword arguments override them).
    MAX_ATTEMPTS: int = 1
    RETRY_BACKOFF: float = 1.0
    RETRY_BACKOFF_MAX: float = 3600.0
    RETRY_JITTER: bool = True
    TIMEOUT: float | None = None
    #: How long a task asked to stop (``offload.cancel``), or a coroutine cancelled at its
    #: timeout, has to stop before it is failed anyway and its process replaced.
    CANCEL_GRACE: float = 5.0
    #: The time limit of an ``atomic=True`` task without a ``timeout`` of its own: its
    #: transaction stays open while it runs (on SQLite holding the one write lock).
    ATOMIC_TIMEOUT: float = 10.0
    #: Largest task payload (arguments as JSON) enqueue accepts; None: no limit.
    MAX_PAYLOAD_BYTES: int | None = 1024 * 1024

    @classmethod
    def from_params(cls, alias, raw):
        known = {f.name for f in fields(cls)}
        values = {}
        for key, value in (raw or {}).items():
            if key not in known:
                raise ImproperlyConfigured(
                    f"TASKS[{alias!r}]['OPTIONS'] has an unknown key {key!r}.{did_you_mean(key, known)} "
                    f"Known keys: {', '.join(sorted(known))}."
                )
            values[key] = value
        try:
            for key in ("LEASE_SECONDS", "HEARTBEAT_SECONDS", "POLL_SECONDS", "RETAIN",
                        "RETRY_BACKOFF", "RETRY_BACKOFF_MAX", "TIMEOUT", "CANCEL_GRACE",
                        "ATOMIC_TIMEOUT"):
                if values.get(key) is not None:
                    values[key] = parse_duration(values[key], name=key)
        except ValueError as exc:
            raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']: {exc}") from None
        options = cls(**values)
        if options.ATOMIC_TIMEOUT <= 0:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['ATOMIC_TIMEOUT'] must be a positive duration.")
        if options.CANCEL_GRACE <= 0:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['CANCEL_GRACE'] must be a positive duration.")
        if options.LEASE_SECONDS < 1:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['LEASE_SECONDS'] must be at least 1 second."
            )
        if options.AGE_RATE < 0 or options.AGE_CAP < 0:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']: AGE_RATE and AGE_CAP must not be negative."
            )
        bad = {q: n for q, n in options.QUEUE_LIMITS.items() if not isinstance(n, int) or n < 1}
        if bad:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['QUEUE_LIMITS'] needs whole numbers >= 1: {bad}."
            )
        if not isinstance(options.RATE_LIMITS, dict):
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['RATE_LIMITS'] must be a dict of queue names to "
                "rates, such as {'crm': '100/m'}.")
        try:
            parse_queue_rates(options.RATE_LIMITS)
        except ValueError as exc:
            raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']: {exc}") from None
        from offload.scheduling.periodic import parse_schedules

        try:
            parse_schedules(options.PERIODIC)
        except ValueError as exc:
            raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']: {exc}") from None
        limit = options.MAX_PAYLOAD_BYTES
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['MAX_PAYLOAD_BYTES']={limit!r}: use a whole number "
                "of bytes >= 1 (1048576 = 1 MiB), or None for no limit."
            )
        listen = options.LISTEN
        if not isinstance(listen, (bool, str)) or listen == "":
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['LISTEN']={listen!r}: use True, False, or the "
                "DATABASES alias of a direct connection to the task database.")
        if isinstance(listen, str) and listen not in settings.DATABASES:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']['LISTEN']={listen!r} is not a DATABASES alias."
                f"{did_you_mean(listen, settings.DATABASES)} DATABASES has: "
                f"{', '.join(sorted(settings.DATABASES))}.")
        if options.MAX_ATTEMPTS < 1 or options.MAX_RESCUES < 0:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']: MAX_ATTEMPTS must be >= 1 and MAX_RESCUES >= 0."
            )
        return options

    @cached_property
    def queue_rates(self):
        """``RATE_LIMITS`` parsed: ``{queue: (seconds per task, burst)}``."""
        return parse_queue_rates(self.RATE_LIMITS)

    @property
    def heartbeat(self):
        return self.HEARTBEAT_SECONDS or self.LEASE_SECONDS / 3
