"""``offload run``: start what this process's role (``OFFLOAD_ROLE``, or ``--role``) says:
gunicorn (``web``), the async server of a profile (``async`` or a profile's name), or
both (``all``, the local default). Under ``--reload`` (DEBUG's default) a code change
restarts all of it, web included. Example::

    OFFLOAD_ROLE=async-bulk manage.py offload run      # OFFLOAD_PROFILES['async-bulk']
    manage.py offload run --role all --addr 0.0.0.0:8000
"""

import os
import sys

from django.core.management.base import CommandError

from offload.commands import webserver
from offload.commands.common import reloading, why


def handle(command, *, role, addr, reload, **_):
    from offload import roles
    from offload.logs import configure as configure_logging
    from offload.worker import reload as devloop

    try:
        kind, profile = roles.resolve(role)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if kind == roles.WEB and reload:
        raise CommandError("--reload: the web role runs gunicorn, which offload run does "
                           "not restart; in development use manage.py runserver (it "
                           "reloads) or OFFLOAD_ROLE=all.")
    serving = kind != roles.WEB and reloading(reload)
    if addr:
        os.environ["OFFLOAD_WEB_BIND"] = addr
    os.environ.setdefault("OFFLOAD_ROLE", role or roles.role_name())
    if serving and not devloop.is_child():  # this process only restarts the one that serves
        configure_logging()
        sys.exit(devloop.restart_loop(why(reload)))
    web = None
    if kind in (roles.WEB, roles.ALL):
        web = webserver.start(exec_=kind == roles.WEB)
        command.stdout.write(f"Offload: web on http://{os.environ.get('OFFLOAD_WEB_BIND', '127.0.0.1:8000')}/"
                             + (" and the async server; Ctrl-C stops both." if web else ""))
    from offload.worker.supervisor import Supervisor

    configure_logging()
    try:
        supervisor = Supervisor(**profile.supervisor_arguments(), companions=[web] if web else [])
        code = devloop.serve(supervisor) if serving else supervisor.run()
    finally:
        if web is not None:
            webserver.stop(web)
    if code:
        sys.exit(code)
