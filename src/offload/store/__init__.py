"""Storage: every SQL statement of the hot path, one implementation per database engine.

``get_store(db_alias)`` returns the store for a database alias; the backend and the
worker call its methods (``enqueue``, ``claim``, ``complete``, ``heartbeat``,
``hand_back``, ``rescue``, ``prune``) and never build SQL themselves::

    store = get_store("default")
    claimed = store.claim(backend="default", queues=["default"], limit=8, worker="w1", lease=30)
"""

from django.db import connections

from offload.store.base import Claimed, Outcome, Store

__all__ = ["Claimed", "Outcome", "Store", "get_store"]


def get_store(db_alias):
    vendor = connections[db_alias].vendor
    if vendor == "postgresql":
        from offload.store.postgres import PostgresStore

        return PostgresStore(db_alias)
    if vendor == "sqlite":
        from offload.store.sqlite import SqliteStore

        return SqliteStore(db_alias)
    raise NotImplementedError(
        f"Offload stores tasks in PostgreSQL or SQLite; database {db_alias!r} is {vendor}. "
        "Point TASKS[...]['OPTIONS']['DATABASE'] at a PostgreSQL or SQLite alias."
    )
