-- filters (a fragment of claim): the claimer's queues (all when any_queue), minus
-- excluded (%(exclude)s, a JSON array) and paused queues, at or above a minimum
-- priority (reserved threads), in the claim's indexes (not set aside for a full
-- concurrency key, not_waiting), and only while the claimer's server runs (see
-- claimable).
{in_queues}
              AND queue_name NOT IN (SELECT value FROM json_each(%(exclude)s))
              AND {claimable}
              AND priority >= %(min_priority)s
              AND {not_waiting}
