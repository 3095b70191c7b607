-- runnable: is any task of these queues ({queue_filter}) runnable now, paused queues
-- aside? A --burst worker asks before exiting, because a claim can come back empty
-- while tasks wait only for a queue limit or a reserved slot.
SELECT EXISTS (
    SELECT 1 FROM offload_task
    WHERE status = 'READY' AND backend = %(backend)s AND {queue_filter}
      AND available_at <= %(now)s
      AND queue_name NOT IN (SELECT q.queue_name FROM offload_queue q
                             WHERE q.backend = %(backend)s AND q.paused)
)
