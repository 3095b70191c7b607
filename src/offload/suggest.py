"""Suggestions for mistyped names, for messages that name the fix. Example::

    did_you_mean("QUEUE", ["BACKEND", "QUEUES", "OPTIONS"])   # " Did you mean 'QUEUES'?"
"""

import difflib

__all__ = ["did_you_mean"]


def did_you_mean(word, choices):
    """`` Did you mean 'X'?`` for the closest of ``choices`` to a mistyped ``word``, or ""."""
    choices = sorted(str(c) for c in choices)
    word = str(word)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6) or [
        c for c in choices if len(word) >= 3 and c.upper().startswith(word.upper())][:1]
    return f" Did you mean {close[0]!r}?" if close else ""
