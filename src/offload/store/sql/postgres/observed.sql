-- observed (a fragment of record_rows): the rows `done` holds, with the minute they
-- count in (a retry: the minute its attempt started) and the last attempt's wait
-- (runnable → started) and run (started → finished) in seconds (date_part: a float8,
-- cheaper than extract's numeric).
SELECT backend, queue_name, priority, status,
       date_trunc('minute', COALESCE(finished_at, last_attempted_at)) AS minute,
       date_part('epoch', last_attempted_at - available_at) AS wait,
       date_part('epoch', finished_at - last_attempted_at) AS run
FROM done
