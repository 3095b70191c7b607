-- not_waiting (a fragment of every claim's scan): the task is not set aside for its full
-- concurrency key (key_waiting); the claim's partial indexes hold only such tasks.
NOT key_waiting
