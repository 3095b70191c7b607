-- unpaced: bucket %(key)s's due tasks without a turn, best first, with what their turn
-- needs (their age_key is recomputed when ageing).
SELECT id, priority, age_key IS NOT NULL, available_at, rate_interval, rate_burst
FROM offload_task
WHERE backend = %(backend)s AND status = 'READY' AND rate_key = %(key)s AND rate_paced = 0
  AND key_waiting = 0 AND available_at <= %(now)s
ORDER BY priority DESC, fair_seq, available_at, id
