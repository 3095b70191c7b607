"""The web role's server: gunicorn on the project's WSGI application with the role's
probes and static files (``offload.web``), configured by ``offload.gunicorn_conf``.
Example::

    web = start(exec_=False)   # role "all": a child process, stopped with the async server
    ...
    stop(web)
    start(exec_=True)          # role "web": this process becomes gunicorn (never returns)
"""

import os
import subprocess
import sys


def start(exec_):
    """Start gunicorn; exec it for the web role (PID 1 in a container gets SIGTERM
    directly), else return its ``Popen``."""
    from django.conf import settings

    argv = [sys.executable, "-m", "gunicorn", "-c", "python:offload.gunicorn_conf",
            "offload.web:application"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings.SETTINGS_MODULE)
    # The web role's drain budget, declared once in settings (see deploy/render.py).
    os.environ.setdefault("OFFLOAD_WEB_GRACE", str(getattr(settings, "OFFLOAD_WEB_GRACE", 20)))
    if exec_:
        sys.stdout.flush()
        os.execv(sys.executable, argv)
    return subprocess.Popen(argv)


def stop(web):
    """Never leave gunicorn orphaned: SIGTERM, its drain budget (+5 s), then SIGKILL."""
    if web.poll() is not None:
        return
    web.terminate()
    try:
        web.wait(float(os.environ["OFFLOAD_WEB_GRACE"]) + 5)
    except subprocess.TimeoutExpired:
        web.kill()
        web.wait()
