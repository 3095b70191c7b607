-- is_waiting (a fragment): the task is set aside for its full concurrency key; written
-- as offload_task_key_waiting's condition is, so SQLite uses that index.
key_waiting = 1
