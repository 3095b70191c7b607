-- not_waiting (a fragment of every claim's scan): the task is not set aside for its full
-- concurrency key (key_waiting); written as the claim's partial indexes are, so SQLite
-- uses them.
key_waiting = 0
