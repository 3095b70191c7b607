"""Roles: what a process of the one codebase is, read in one place.

``OFFLOAD_ROLE`` (environment, else the ``OFFLOAD_ROLE`` setting, else ``all``) is
``web``, ``async``, ``all`` (web and async server together: the local default) or the
name of an async profile declared in settings::

    OFFLOAD_PROFILES = {
        "async":      {"processes": 2, "threads": 8, "reserve": "2:50"},
        "async-bulk": {"queues": ["reports"], "processes": 1, "threads": 2, "grace": "10m"},
    }

A profile takes ``backend``, ``queues``, ``processes``, ``threads``,
``async_concurrency``, ``reserve`` (``"SLOTS:PRIORITY"``), ``queue_limits`` (``{"crm": 2}``) and ``grace`` (the role's
drain budget), each validated as the worker's flags are (``offload.spec.WorkerSpec``).
``async`` without a profile uses the worker defaults.
"""

import os
import socket
import subprocess
from pathlib import Path

from django.conf import settings

from offload.spec import WorkerSpec

WEB, ASYNC, ALL = "web", "async", "all"


def role_name():
    return os.environ.get("OFFLOAD_ROLE") or getattr(settings, "OFFLOAD_ROLE", ALL)


def profiles():
    """Every async profile, validated: ``{name: WorkerSpec}``; raises ValueError."""
    declared = dict(getattr(settings, "OFFLOAD_PROFILES", {}) or {})
    declared.setdefault(ASYNC, {})
    result = {}
    for name, entry in declared.items():
        if name in (WEB, ALL):
            raise ValueError(f"OFFLOAD_PROFILES[{name!r}]: {name!r} is a built-in role, not a profile name.")
        result[name] = WorkerSpec.from_profile(name, entry)
    return result


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
                             text=True, timeout=5,
                             cwd=Path(settings.BASE_DIR) if hasattr(settings, "BASE_DIR") else None)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def server_name():
    """This process's id in the server registry (and the prefix of its workers' ids)."""
    return f"{socket.gethostname()}-{os.getpid()}"
