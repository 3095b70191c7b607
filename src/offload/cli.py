"""The ``offload`` console command: ``manage.py offload`` without manage.py.

Needs ``DJANGO_SETTINGS_MODULE`` (or ``--settings``) and the project importable from
the current directory; ``offload``, ``offload --help`` and ``offload COMMAND --help``
work without them. Example::

    DJANGO_SETTINGS_MODULE=backoffice.settings offload worker --processes 2
    offload --help
"""

import os
import sys

HELP = ("-h", "--help")


def parser():
    """The parser of ``manage.py offload``, as the console script names it ("offload"):
    made without settings, for help and the CLI reference (``offload.clidoc``)."""
    from offload.management.commands.offload import Command

    command = Command()
    command._called_from_command_line = True  # argparse errors: usage and exit 2
    return command.create_parser("offload", "offload")


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    configured = os.environ.get("DJANGO_SETTINGS_MODULE") or any(a.startswith("--settings") for a in argv)
    if not argv or (not configured and any(a in HELP for a in argv)):
        parser().parse_args(argv or ["--help"])  # prints the help and exits 0
    if not configured:
        sys.stderr.write(
            "offload: set DJANGO_SETTINGS_MODULE (for example "
            "DJANGO_SETTINGS_MODULE=mysite.settings offload worker) or pass --settings.\n"
        )
        return 2
    sys.path.insert(0, os.getcwd())
    if os.environ.get("DJANGO_SETTINGS_MODULE") and (problem := _not_installed()):
        sys.stderr.write(f"offload: {problem}\n")
        return 1
    from django.core.management import execute_from_command_line

    execute_from_command_line(["offload", "offload", *argv])
    return 0


def _not_installed():
    """Why the ``offload`` command cannot exist in these settings (Django would say
    "Unknown command: 'offload'"), or None."""
    import django
    from django.apps import apps
    from django.conf import settings

    django.setup()
    if apps.is_installed("offload"):
        return None
    from offload.checks import MISSING_APP_HINT

    return f"'offload' is not in INSTALLED_APPS of {settings.SETTINGS_MODULE}. {MISSING_APP_HINT}"
