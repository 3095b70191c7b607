"""Roles: what a process of the one codebase is, read in one place.

``OFFLOAD_ROLE`` (environment, else the ``OFFLOAD_ROLE`` setting, else ``all``) is
``web``, ``async``, ``all`` (web and async server together: the local default) or the
name of an async profile declared in settings::

    OFFLOAD_PROFILES = {
        "async":      {"processes": 2, "threads": 8, "reserve": "2:50"},
        "async-bulk": {"queues": ["reports"], "processes": 1, "threads": 2, "grace": "10m"},
    }

A profile takes ``backend``, ``queues``, ``processes``, ``threads``, ``reserve``
(``"SLOTS:PRIORITY"``), ``queue_limits`` (``{"crm": 2}``) and ``grace`` (the role's
drain budget). ``async`` without a profile uses the worker defaults.
"""

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from offload.conf import did_you_mean, parse_duration

WEB, ASYNC, ALL = "web", "async", "all"
_PROFILE_KEYS = {"backend", "queues", "processes", "threads", "reserve", "queue_limits", "grace"}
#: Drain budget of an async server when its profile does not set one.
DEFAULT_GRACE = 30.0


@dataclass(frozen=True)
class Profile:
    name: str
    backend: str = "default"
    queues: list = field(default_factory=list)
    processes: int | None = None
    threads: int = 4
    reserve: tuple | None = None
    queue_limits: dict = field(default_factory=dict)
    grace: float = DEFAULT_GRACE


def role_name():
    return os.environ.get("OFFLOAD_ROLE") or getattr(settings, "OFFLOAD_ROLE", ALL)


def profiles():
    """Every async profile, validated: ``{name: Profile}``; raises ValueError."""
    declared = dict(getattr(settings, "OFFLOAD_PROFILES", {}) or {})
    declared.setdefault(ASYNC, {})
    result = {}
    for name, spec in declared.items():
        if name in (WEB, ALL):
            raise ValueError(f"OFFLOAD_PROFILES[{name!r}]: {name!r} is a built-in role, not a profile name.")
        if not isinstance(spec, dict):
            raise ValueError(f"OFFLOAD_PROFILES[{name!r}] = {spec!r}: a profile is a dict such as "
                             "{'queues': ['reports'], 'threads': 2}.")
        for key in sorted(set(spec) - _PROFILE_KEYS):
            raise ValueError(f"OFFLOAD_PROFILES[{name!r}] has an unknown key {key!r}."
                             f"{did_you_mean(key, _PROFILE_KEYS)} Allowed: {', '.join(sorted(_PROFILE_KEYS))}.")
        queues = spec.get("queues", [])
        if isinstance(queues, str) or not all(isinstance(q, str) and q for q in queues):
            raise ValueError(f"OFFLOAD_PROFILES[{name!r}]['queues'] = {queues!r}: use a list of "
                             "queue names, for example ['reports'].")
        spec = dict(spec)
        where = f"OFFLOAD_PROFILES[{name!r}]"
        for key in ("threads", "processes"):
            value = spec.get(key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{where}[{key!r}] = {value!r}: use a whole number >= 1.")
        if "reserve" in spec:
            spec["reserve"] = parse_reserve(spec["reserve"], spec.get("threads", Profile.threads),
                                            name=f"{where}['reserve']")
        limits = spec.get("queue_limits") or {}
        bad = {q: n for q, n in limits.items() if not isinstance(n, int) or isinstance(n, bool) or n < 1}
        if bad:
            raise ValueError(f"{where}['queue_limits'] needs whole numbers >= 1: {bad}.")
        if "grace" in spec:
            spec["grace"] = parse_duration(spec["grace"], name=f"{where}['grace']")
        result[name] = Profile(name=name, **spec)
    return result


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


def resolve(name=None):
    """``(role, profile)``: role is web/async/all; profile is the async profile (None for web)."""
    name = name or role_name()
    if name == WEB:
        return WEB, None
    known = profiles()
    if name == ALL:
        return ALL, known[ASYNC]
    if name in known:
        return ASYNC, known[name]
    raise ValueError(f"OFFLOAD_ROLE={name!r} is not a role: use web, async, all or one of the "
                     f"profiles in OFFLOAD_PROFILES ({', '.join(sorted(known))}).")


def current_release():
    """``OFFLOAD_RELEASE``, else the git commit of the code, else "unknown"."""
    if release := os.environ.get("OFFLOAD_RELEASE"):
        return release
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(settings.BASE_DIR) if hasattr(settings, "BASE_DIR") else None)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def server_name():
    """This process's id in the server registry (and the prefix of its workers' ids)."""
    return f"{socket.gethostname()}-{os.getpid()}"
