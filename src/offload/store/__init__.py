"""Storage: every SQL statement Offload runs, one implementation per database engine.

``get_store(db_alias)`` returns the store for a database alias, which implements the
contract ``Store`` (``contract.py``); the backend and the worker call its methods
(``enqueue``, ``claim``, ``complete``, ``heartbeat``, ``hand_back``, ``rescue``,
``prune``) and never build SQL themselves. Inside: ``contract.py`` (the Protocol and
the rows it hands over), ``queries.py`` (named queries from ``sql/<engine>/*.sql``),
``base.py`` (what both engines share), ``postgres.py``, ``sqlite.py``::

    store = get_store("default")
    claimed = store.claim(backend="default", queues=["default"], limit=8, worker="w1", lease=30)
"""

from django.db import connections

from offload.store.contract import Claimed, Outcome, Store

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
