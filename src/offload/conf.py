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
                        "RETRY_BACKOFF", "RETRY_BACKOFF_MAX", "TIMEOUT", "CANCEL_GRACE"):
                if values.get(key) is not None:
                    values[key] = parse_duration(values[key], name=key)
        except ValueError as exc:
            raise ImproperlyConfigured(f"TASKS[{alias!r}]['OPTIONS']: {exc}") from None
        options = cls(**values)
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

    @property
    def heartbeat(self):
        return self.HEARTBEAT_SECONDS or self.LEASE_SECONDS / 3
