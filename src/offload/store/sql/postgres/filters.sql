-- filters (a fragment of picked): the claimer's queues (all when any_queue), minus
-- excluded (%(exclude)s, an array) and paused queues, at or above a minimum priority
-- (reserved threads), in the claim's indexes (not set aside for a full concurrency
-- key, not_waiting), and only while the claimer's server runs (see claimable).
{in_queues}
      AND NOT queue_name = ANY(%(exclude)s)
      AND {claimable}
      AND priority >= %(min_priority)s
      AND {not_waiting}
