-- observed (a fragment of record_rows): per task, what offload_series counts, in the
-- order of offload.stats.observation's arguments.
backend, queue_name, priority, task_path, status, available_at, last_attempted_at, finished_at
