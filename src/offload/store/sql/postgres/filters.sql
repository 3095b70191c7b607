-- filters (a fragment of picked): the claimer's queues (all when any_queue), minus
-- excluded and paused queues, at or above a minimum priority (reserved threads).
-- The last condition is the release fence: a worker whose server was retired or
-- declared dead claims nothing, even if it is still running.
(%(any_queue)s OR queue_name = ANY(%(queues)s))
      AND NOT queue_name = ANY(%(exclude)s)
      AND queue_name NOT IN (SELECT q.queue_name FROM offload_queue q
                             WHERE q.backend = %(backend)s AND q.paused)
      AND priority >= %(min_priority)s
      AND NOT EXISTS (SELECT 1 FROM offload_server s
                      WHERE s.id = %(server)s AND s.state <> 'running')
