-- runnable: is any task of these queues (see in_queues) runnable now, paused queues
-- aside? A --burst worker asks before exiting, because a claim can come back empty
-- while tasks wait only for a queue limit or a reserved slot.
SELECT EXISTS (
    SELECT 1 FROM offload_task
    WHERE status = 'READY' AND backend = %(backend)s AND {in_queues}
      AND available_at <= %(now)s
      AND {unpaused}
)
