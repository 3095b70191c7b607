"""A simulated credit bureau: an external service with realistic latency that is
sometimes unavailable, so the credit check retries like a real one would.

Answers are deterministic per business (the same applicant gets the same report);
latency and failures are random. Tune with settings ``LOANS_BUREAU_LATENCY``
(seconds, ``(low, high)``) and ``LOANS_BUREAU_FAILURE_RATE`` (0–1).
"""

import hashlib
import random
import time

from django.conf import settings


class BureauUnavailable(Exception):
    """The bureau timed out or answered 503; the task retries with backoff."""


def fetch_report(business_name, owner_name):
    low, high = getattr(settings, "LOANS_BUREAU_LATENCY", (0.15, 0.9))
    time.sleep(random.uniform(low, high))
    if random.random() < getattr(settings, "LOANS_BUREAU_FAILURE_RATE", 0.15):
        raise BureauUnavailable("credit bureau: 503 Service Unavailable (try again later)")
    return report_for(business_name, owner_name)


def report_for(business_name, owner_name):
    seed = hashlib.sha256(f"{business_name.lower()}|{owner_name.lower()}".encode()).digest()
    rng = random.Random(seed)
    score = max(300, min(850, round(rng.gauss(680, 70))))
    return {
        "bureau_reference": "CB-" + seed.hex()[:12].upper(),
        "bureau_score": score,
        "open_accounts": rng.randint(1, 14),
        "delinquencies": max(0, round(rng.gauss((720 - score) / 60, 1))),
        "inquiries_6m": rng.randint(0, 6),
    }
