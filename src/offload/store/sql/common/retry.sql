-- retry: run FAILED tasks (%(ids)s) again, now, keeping their errors and attempts.
UPDATE offload_task SET
    status = 'READY', available_at = %(now)s, finished_at = NULL,
    age_key = CASE WHEN %(age_rate)s > 0 THEN priority - %(age_now)s END
WHERE backend = %(backend)s AND status = 'FAILED' AND {in_ids}
RETURNING id
