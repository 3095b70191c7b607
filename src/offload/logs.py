"""Logging for Offload's servers: one line format for Offload's and Django's task records,
and a JSON formatter for log pipelines.

``manage.py offload worker`` and ``offload run`` call ``configure()`` in the server
process and in every worker process. A logger the project's ``LOGGING`` leaves alone
gets Offload's handler: ``offload`` and ``django.tasks`` (Django's ``Task id=… state=…``
lines, with the traceback of a failed task) at INFO, and the root logger at WARNING
when ``LOGGING`` declares no loggers, all on stderr as ``FORMAT``::

    2026-12-01 05:35:21,688 ERROR django.tasks Task id=4 path=shop.tasks.boom state=FAILED
    Traceback (most recent call last): ...

A logger the project configures (itself, a parent such as ``django``, or a child) is
left exactly as configured, and so is everything when ``LOGGING`` configures the root
logger, the root logger already has handlers, or ``LOGGING_CONFIG`` is not Django's
default. JSON logs, one object per line, in settings::

    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "offload.logs.JSONFormatter"}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"handlers": ["json"], "level": "INFO"},
        "loggers": {"django": {"handlers": ["json"], "level": "INFO", "propagate": False}},
    }
"""

import json
import logging
import sys
from datetime import UTC, datetime

__all__ = ["FORMAT", "JSONFormatter", "configure"]

#: The line format of the records Offload's servers print when the project has not
#: configured logging for them.
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
#: The name of Offload's handler (so ``configure`` adds it once).
HANDLER = "offload.console"
#: The loggers Offload's servers give a handler when the project's LOGGING does not.
LOGGERS = ("offload", "django.tasks")


def _declares(names, logger):
    """Whether a LOGGING ``loggers`` entry covers ``logger``: itself, a parent or a child."""
    return any(n == logger or logger.startswith(f"{n}.") or n.startswith(f"{logger}.")
               for n in names)


def configure():
    """Give Offload's handler to the loggers the project's logging leaves alone.
    Idempotent; call it after ``django.setup()``."""
    from django.conf import settings

    if settings.LOGGING_CONFIG != "logging.config.dictConfig":
        return  # the project sets logging up its own way
    declared = settings.LOGGING or {}
    names = set(declared.get("loggers") or ())
    root = logging.getLogger()
    if declared.get("root") or "" in names or root.handlers:
        return  # everything propagates to the project's root handlers
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER)
    handler.setFormatter(logging.Formatter(FORMAT))
    for name in LOGGERS:
        if not _declares(names, name):
            _attach(logging.getLogger(name), handler, logging.INFO)
    if not names:
        _attach(root, handler, logging.WARNING, propagate=True)


def _attach(logger, handler, level, propagate=False):
    if any(h.get_name() == HANDLER for h in logger.handlers):
        return
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate
    if logger.name == "django.tasks":
        # Not propagated (DEBUG's console handler on "django" would print each line a
        # second time, bare), so keep Django's mail to ADMINS about failed tasks.
        from django.utils.log import AdminEmailHandler

        for other in logging.getLogger("django").handlers:
            if isinstance(other, AdminEmailHandler):
                logger.addHandler(other)


#: Attributes every LogRecord has; any other attribute came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, ``process``, ``thread`` (its name), ``exception`` (the formatted
    traceback) when the record has one, and each ``extra=`` field (as a string if it is
    not JSON). Example::

        {"time": "2026-12-01T05:35:21.688+00:00", "level": "ERROR", "logger": "django.tasks",
         "message": "Task id=4 path=shop.tasks.boom state=FAILED", "process": 812,
         "thread": "offload-task-0", "exception": "Traceback (most recent call last): ..."}
    """

    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        return json.dumps(entry, default=str, ensure_ascii=False)
