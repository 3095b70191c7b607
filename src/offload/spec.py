"""What an async server is: one validated ``WorkerSpec``, from the worker's flags or from an
``OFFLOAD_PROFILES`` entry, by the same rules.

``offload worker --threads 8 --reserve 2:50`` and the profile ``{"threads": 8,
"reserve": "2:50"}`` give equal specs; an invalid value is a ValueError naming where it
was written (``--reserve = '2:8': ...`` or ``OFFLOAD_PROFILES['async']['reserve'] =
'2:8': ...``). ``supervisor_arguments()`` is the one place a spec becomes the
``Supervisor(...)`` keyword arguments. Settings-only: which backends and queues exist is
checked by the caller (the worker command, ``offload.checks``). Example::

    spec = WorkerSpec.from_flags(backend="default", queues="emails,crm", processes=None,
                                 threads=4, grace="30s", reserve="1:50",
                                 queue_limit=["crm=2"], role="async")
    spec == WorkerSpec.from_profile("async", {"queues": ["emails", "crm"], "reserve": "1:50",
                                              "queue_limits": {"crm": 2}})   # True
    Supervisor(**spec.supervisor_arguments(), burst=True)
"""

import re
from dataclasses import dataclass, field

from offload.conf import parse_duration
from offload.suggest import did_you_mean

#: Drain budget of an async server when its flags or profile do not set one.
DEFAULT_GRACE = 30.0
#: Coroutine tasks one worker process runs at once unless told (0: on the threads).
ASYNC_CONCURRENCY = 500
#: The keys of an ``OFFLOAD_PROFILES`` entry, and the flag that sets each on ``offload worker``.
FLAGS = {"backend": "--backend", "queues": "--queues", "processes": "--processes",
         "threads": "--threads", "async_concurrency": "--async-concurrency",
         "reserve": "--reserve", "queue_limits": "--queue-limit", "grace": "--grace"}
_QUEUE_LIMIT = re.compile(r"([^=]+)=(-?\d+)")


@dataclass(frozen=True)
class WorkerSpec:
    """An async server: ``name`` is its role in the server registry (``--role`` or the
    profile's name), ``queues`` empty means every queue the backend declares,
    ``processes`` None the CPU count, ``async_concurrency`` the coroutine tasks a process
    runs at once (0: they take threads), ``grace`` seconds, ``reserve`` ``(slots,
    priority)`` or None. Build it with ``from_flags``/``from_profile`` (or ``build``)."""

    name: str
    backend: str = "default"
    queues: list = field(default_factory=list)
    processes: int | None = None
    threads: int = 4
    async_concurrency: int = ASYNC_CONCURRENCY
    reserve: tuple | None = None
    queue_limits: dict = field(default_factory=dict)
    grace: float = DEFAULT_GRACE

    @classmethod
    def build(cls, name, where, **values):
        """The spec from the ``FLAGS`` keys given in ``values`` (the others take their
        defaults), validated; ``where(key)`` names a value's origin in an error."""
        threads = values.get("threads", cls.threads)
        queues = values.get("queues") or []
        if isinstance(queues, str) or not all(isinstance(q, str) and q for q in queues):
            raise ValueError(f"{where('queues')} = {queues!r}: use a list of "
                             "queue names, for example ['reports'].")
        for key in ("threads", "processes"):
            value = values.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{where(key)} = {value!r}: use a whole number >= 1.")
        coroutines = values.get("async_concurrency")
        if coroutines is None:
            coroutines = ASYNC_CONCURRENCY
        elif not isinstance(coroutines, int) or isinstance(coroutines, bool) or coroutines < 0:
            raise ValueError(f"{where('async_concurrency')} = {coroutines!r}: use a whole number "
                             ">= 0 (0 runs coroutine tasks on the threads).")
        reserve = values.get("reserve")
        if reserve not in (None, ""):
            reserve = parse_reserve(reserve, threads, name=where("reserve"))
        limits = values.get("queue_limits") or {}
        if not isinstance(limits, dict) or not all(isinstance(q, str) and q for q in limits):
            raise ValueError(f"{where('queue_limits')} = {limits!r}: use queue names and whole "
                             "numbers >= 1, for example {'crm': 2}.")
        bad = {q: n for q, n in limits.items() if not isinstance(n, int) or isinstance(n, bool) or n < 1}
        if bad:
            raise ValueError(f"{where('queue_limits')} needs whole numbers >= 1: {bad}.")
        grace = values.get("grace", DEFAULT_GRACE)
        return cls(name=name, backend=values.get("backend", cls.backend), queues=list(queues),
                   processes=values.get("processes"), threads=threads,
                   async_concurrency=coroutines, reserve=reserve or None,
                   queue_limits=dict(limits), grace=parse_duration(grace, name=where("grace")))

    @classmethod
    def from_flags(cls, *, backend, queues, processes, threads, grace, reserve, queue_limit, role,
                   async_concurrency=None):
        """From ``offload worker``'s options: ``queues`` comma-separated (None: every
        queue), ``queue_limit`` a list of ``QUEUE=N``."""
        limits = {}
        for value in queue_limit:
            match = _QUEUE_LIMIT.fullmatch(value)
            if not match or not match[1].strip():
                raise ValueError(f"--queue-limit {value!r}: use QUEUE=N with N >= 1, e.g. crm=2.")
            limits[match[1]] = int(match[2])
        chosen = [q.strip() for q in queues.split(",") if q.strip()] if queues else []
        return cls.build(role, FLAGS.get, backend=backend, queues=chosen, processes=processes,
                         threads=threads, async_concurrency=async_concurrency, grace=grace,
                         reserve=reserve, queue_limits=limits)

    @classmethod
    def from_profile(cls, name, entry):
        """From ``OFFLOAD_PROFILES[name]``, a dict of ``FLAGS`` keys."""
        where = f"OFFLOAD_PROFILES[{name!r}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} = {entry!r}: a profile is a dict such as "
                             "{'queues': ['reports'], 'threads': 2}.")
        for key in sorted(set(entry) - set(FLAGS)):
            raise ValueError(f"{where} has an unknown key {key!r}."
                             f"{did_you_mean(key, FLAGS)} Allowed: {', '.join(sorted(FLAGS))}.")
        return cls.build(name, lambda key: f"{where}[{key!r}]", **entry)

    def supervisor_arguments(self):
        """``Supervisor(**spec.supervisor_arguments(), burst=..., companions=...)``."""
        return dict(alias=self.backend, queues=self.queues or None, processes=self.processes,
                    threads=self.threads, async_concurrency=self.async_concurrency,
                    grace=self.grace, reserve=self.reserve,
                    queue_limits=self.queue_limits, role=self.name)


def parse_reserve(value, threads, *, name="--reserve"):
    """``(slots, priority)`` from ``"SLOTS:PRIORITY"``; ValueError unless 1 <= SLOTS <
    threads (a general thread must remain) and -100 <= PRIORITY <= 100."""
    slots, _, priority = str(value).partition(":")
    try:
        slots, priority = int(slots), int(priority)
    except ValueError:
        raise ValueError(f"{name} = {value!r}: use 'SLOTS:PRIORITY', for example '2:50'.") from None
    if not 0 < slots < threads or not -100 <= priority <= 100:
        raise ValueError(f"{name} = {value!r}: SLOTS must be 1..{threads - 1} (fewer than the "
                         f"{threads} threads) and PRIORITY -100..100.")
    return slots, priority
