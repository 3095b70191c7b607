-- observed (a fragment of complete's RETURNING and of record_rows): per task, what
-- offload_stat counts: backend, queue, priority, status, the minute it counts in (a
-- retry: the minute its attempt started) and the last attempt's wait (runnable →
-- started) and run (started → finished) in seconds, as postgres/observed.sql.
-- Times are Django's UTC text, YYYY-MM-DD HH:MM:SS[.ffffff]: the minute is its first
-- 16 characters, and a duration is whole seconds by julianday plus the difference of
-- the microseconds, because SQLite's date functions keep only milliseconds.
backend, queue_name, priority, status,
substr(COALESCE(finished_at, last_attempted_at), 1, 16) || ':00',
round((julianday(substr(last_attempted_at, 1, 19)) - julianday(substr(available_at, 1, 19))) * 86400)
    + (substr(last_attempted_at, 21) - substr(available_at, 21)) / 1e6,
round((julianday(substr(finished_at, 1, 19)) - julianday(substr(last_attempted_at, 1, 19))) * 86400)
    + (substr(finished_at, 21) - substr(last_attempted_at, 21)) / 1e6
