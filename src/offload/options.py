"""Names of the per-task options an ``OffloadTask`` carries (see ``backend.OffloadTask``)."""

OPTION_NAMES = ("max_attempts", "retry_backoff", "retry_backoff_max", "retry_jitter", "timeout",
                "atomic")
