"""Retry delay: exponential backoff with full jitter, capped.

Example::

    retry_delay(attempt=3, base=1.0, cap=3600, jitter=False)  # 4.0 seconds
"""

import random


def retry_delay(*, attempt, base, cap, jitter, rand=random.random):
    """Seconds to wait before retry number ``attempt`` (1 = after the first failure)."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    # Full jitter (a uniform draw in [delay/2, delay]) spreads retries of tasks that
    # failed together, without ever retrying sooner than half the nominal delay.
    return delay * (0.5 + rand() / 2) if jitter else delay
