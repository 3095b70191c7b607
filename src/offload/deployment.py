"""The deployment: what settings say about where Offload's rows live, built once.

One object answers every "which database?" question — the Offload backends (valid
ones, by alias), each one's task database and store, the task databases, the
registry's home and the database the probes check — so the registry, the router,
the supervisor, the web role, the commands and the dashboard agree. Example::

    deployment = Deployment.current()      # cached; rebuilt when TASKS or DATABASES change
    deployment.backends                    # ("default", "reports")
    deployment.database("reports")         # "tasks": that backend's OPTIONS["DATABASE"]
    deployment.store("reports").prune(backend="reports", before=cutoff)
    deployment.databases                   # ("default", "tasks"): the default backend's first
    deployment.home                        # "default": where the web role registers
    deployment.registry("reports")         # "tasks": an async server registers with its tasks

A backend whose OPTIONS are invalid is left out (``offload.E009`` reports it; using
it raises). With no Offload backend at all, ``databases`` is ``("default",)``.
"""

from dataclasses import dataclass
from functools import cache

from django.core.signals import setting_changed
from django.dispatch import receiver


@dataclass(frozen=True)
class Deployment:
    #: ``((alias, database), ...)`` of the valid Offload backends, in settings order.
    task_databases: tuple[tuple[str, str], ...]
    #: The database /healthz and /readyz check: Django's default one, which the
    #: release step (``offload release``) migrates.
    probe: str = "default"

    @classmethod
    def from_settings(cls):
        from django.tasks import task_backends

        from offload.backend import offload_backends

        return cls(tuple((alias, task_backends[alias].opts.DATABASE) for alias in offload_backends()))

    @staticmethod
    @cache
    def current():
        """The deployment of the current settings (built on first use)."""
        return Deployment.from_settings()

    @property
    def backends(self):
        """Aliases of the valid Offload backends, in settings order."""
        return tuple(alias for alias, _ in self.task_databases)

    def database(self, alias):
        """The database holding backend ``alias``'s tasks; KeyError if it is not a valid
        Offload backend."""
        for name, db in self.task_databases:
            if name == alias:
                return db
        from django.tasks import task_backends

        from offload.backend import OffloadBackend

        backend = task_backends[alias]  # InvalidTaskBackend for an unknown alias
        if isinstance(backend, OffloadBackend):
            backend.opts  # noqa: B018 — raises ImproperlyConfigured: its OPTIONS are invalid
        raise KeyError(f"TASKS[{alias!r}] is not an Offload backend")

    def store(self, alias):
        """The store of backend ``alias`` (its database's)."""
        from django.tasks import task_backends

        self.database(alias)  # KeyError for another backend
        return task_backends[alias].store

    @property
    def databases(self):
        """Every database that holds Offload tasks, once each, the default backend's first."""
        found = []
        for _, db in sorted(self.task_databases, key=lambda pair: pair[0] != "default"):
            if db not in found:
                found.append(db)
        return tuple(found) or ("default",)

    @property
    def home(self):
        """Where a server without a backend of its own (the web role) registers."""
        return self.databases[0]

    def registry(self, alias=None):
        """Where a server registers: its backend's database (the claim's release fence
        reads it there), or ``home`` for one without a backend."""
        return self.home if alias is None else self.database(alias)


@receiver(setting_changed)
def _reset(*, setting, **kwargs):
    if setting in ("TASKS", "DATABASES"):
        Deployment.current.cache_clear()
