"""The subcommands of ``manage.py offload``, one small module each.

The management command (``offload.management.commands.offload``) only parses the
arguments, checks the databases and dispatches: ``offload COMMAND ...`` calls a
function of these modules with the BaseCommand (for ``stdout``/``stderr``) and the
parsed options. A problem the person must fix is a ``CommandError``. Example::

    from offload.commands import queues
    queues.pause(command, backend="default", queue="emails")   # offload pause emails

``common`` (the backend by alias, --reload), ``worker`` (the async server), ``run`` (a
role: web, async, all or a profile) with ``webserver`` (gunicorn), ``queues`` (pause,
resume, the listing), ``prune``, ``servers`` (the listing, retire), ``release`` (migrate
under a lock), ``health`` and ``status`` (the rich view).
"""
