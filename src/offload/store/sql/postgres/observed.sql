-- observed (a fragment of record_rows): per task, what offload_stat counts, in the
-- order of offload.stats.observation's arguments.
backend, queue_name, priority, status, available_at, last_attempted_at, finished_at
