-- filters (a fragment of picked): the claimer's queues (all when any_queue), minus
-- excluded and paused queues, at or above a minimum priority (reserved threads).
(%(any_queue)s OR queue_name = ANY(%(queues)s))
      AND NOT queue_name = ANY(%(exclude)s)
      AND queue_name NOT IN (SELECT q.queue_name FROM offload_queue q
                             WHERE q.backend = %(backend)s AND q.paused)
      AND priority >= %(min_priority)s
