-- in_ids (a fragment): the task is one of %(ids)s, an array of ids.
id = ANY(%(ids)s::bigint[])
