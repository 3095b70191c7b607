-- is_waiting (a fragment): the task is set aside for its full concurrency key.
key_waiting
