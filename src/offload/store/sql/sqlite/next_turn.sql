-- next_turn: the soonest turn of a rate-limited task (the loop wakes for it).
SELECT min(available_at) FROM offload_task
WHERE backend = %(backend)s AND status = 'READY' AND rate_paced = 1 AND available_at > %(now)s
