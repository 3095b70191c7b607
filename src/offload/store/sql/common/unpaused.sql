-- unpaused (a fragment of claimable and runnable): the task's queue is not paused.
queue_name NOT IN (SELECT q.queue_name FROM offload_queue q
                   WHERE q.backend = %(backend)s AND q.paused)
