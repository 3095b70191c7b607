-- in_ids (a fragment): the task is one of %(ids)s, a JSON array of ids.
id IN (SELECT value FROM json_each(%(ids)s))
