"""The ``offload`` console command: ``manage.py offload`` without manage.py.

Needs ``DJANGO_SETTINGS_MODULE`` (and the project importable from the current
directory). Example::

    DJANGO_SETTINGS_MODULE=backoffice.settings offload worker --processes 2
"""

import os
import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not os.environ.get("DJANGO_SETTINGS_MODULE") and not any(a.startswith("--settings") for a in argv):
        sys.stderr.write(
            "offload: set DJANGO_SETTINGS_MODULE (for example "
            "DJANGO_SETTINGS_MODULE=mysite.settings offload worker) or pass --settings.\n"
        )
        return 2
    sys.path.insert(0, os.getcwd())
    from django.core.management import execute_from_command_line

    execute_from_command_line(["offload", "offload", *argv])
    return 0
