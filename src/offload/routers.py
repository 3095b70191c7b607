"""Database router for keeping Offload's task table on its own database alias.

Add it when a backend sets ``OPTIONS["DATABASE"]`` to an alias other than
``default``::

    DATABASE_ROUTERS = ["offload.routers.OffloadRouter"]

The hot path always names the alias itself; the router sends the admin's and
tooling's ORM queries there and migrates the table only where a backend keeps it.

With backends on several task databases the router can name only one (the default
backend's, ``Deployment.home``): the admin shows that database's rows. The dashboard, its actions, the
registry and the ``offload`` command name each backend's database themselves, so
they see every one; an object already loaded stays with the database it came from.
"""

__all__ = ["OffloadRouter"]


def _task_databases():
    from offload.deployment import Deployment

    return Deployment.current().databases


class OffloadRouter:
    def db_for_read(self, model, **hints):
        if model._meta.app_label == "offload":
            instance = hints.get("instance")
            if instance is not None and instance._state.db:
                return instance._state.db
            return _task_databases()[0]
        return None

    db_for_write = db_for_read

    def allow_migrate(self, db, app_label, **hints):
        if app_label == "offload":
            return db in _task_databases()
        return None
