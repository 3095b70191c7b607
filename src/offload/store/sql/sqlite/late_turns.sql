-- late_turns: due tasks with a turn that their bucket's starts do not let start yet (the
-- claims came late and the bucket's starts moved on), per bucket best first, with what
-- a new turn needs; from the paced index (only due turns, a few rows).
SELECT t.id, t.priority, t.age_key IS NOT NULL, t.available_at, t.rate_interval,
       t.rate_burst, b.started, t.rate_key
FROM offload_task AS t
JOIN offload_bucket AS b ON b.backend = t.backend AND b.key = t.rate_key
WHERE t.backend = %(backend)s AND t.status = 'READY' AND t.rate_paced = 1
  AND t.key_waiting = 0 AND t.available_at <= %(now)s
  AND b.started - t.rate_interval / 4.0 - (t.rate_burst - 1) * t.rate_interval
      > %(now_epoch)s + 0.001 * t.rate_interval
ORDER BY t.rate_key, t.priority DESC, t.fair_seq, t.available_at, t.id
