"""``offload release``: the deploy's release step. ``migrate``, once, under the migration
lock: concurrent release steps wait for it (and say so), then find nothing to do.
Example::

    manage.py offload release
    # Release step done: every migration is applied.

    with MigrationLock(connection, on_wait=lambda: print("waiting")):
        call_command("migrate", interactive=False)
"""


class MigrationLock:
    """PostgreSQL: a transaction advisory lock, taken by a connection of its own (with
    ``connection``'s settings) that stays in that one transaction while the migrations
    run on ``connection``: behind a transaction pooler (PgBouncer) the open transaction
    keeps its server session, where a session lock could be taken in one server session
    and released in another, or never. SQLite: an exclusive lock on a file beside the
    database (one machine shares an SQLite file). Tried without waiting first:
    ``on_wait()`` is called only when another process holds it."""

    KEY = 0x0FF10AD  # any constant; the same in every release

    def __init__(self, connection, on_wait=lambda: None):
        self.connection = connection
        self.on_wait = on_wait
        self.file = None
        self.holder = None

    def __enter__(self):
        if not self._take(block=False):
            self.on_wait()
            self._take(block=True)
        return self

    def _take(self, block):
        if self.connection.vendor == "postgresql":
            if self.holder is None:
                from django.db.utils import load_backend

                settings_dict = dict(self.connection.settings_dict)
                self.holder = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(
                    settings_dict, self.connection.alias)
                self.holder.set_autocommit(False)
                with self.holder.cursor() as cursor:  # the transaction begins; it stays
                    # idle in it while the migrations run, and no timeout may end it
                    cursor.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            with self.holder.cursor() as cursor:
                if block:
                    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [self.KEY])
                    return True
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [self.KEY])
                return cursor.fetchone()[0]
        import fcntl

        if self.file is None:
            self.file = open(f"{self.connection.settings_dict['NAME']}.release-lock", "w")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True

    def __exit__(self, *exc):
        if self.file is not None:
            self.file.close()  # releases the flock
        else:
            try:
                self.holder.rollback()  # ends the transaction: releases the lock
            finally:
                self.holder.close()


def handle(command, **_):
    from django.core.management import call_command
    from django.db import connection

    def waiting():
        command.stdout.write("Release step: waiting for the migration lock "
                             "(another release step holds it)")
        command.stdout.flush()

    with MigrationLock(connection, on_wait=waiting):
        call_command("migrate", interactive=False, verbosity=1, stdout=command.stdout)
    command.stdout.write("Release step done: every migration is applied.")
