-- edges: what waits for what (%(edges)s, a JSON array of [parent, child, position]).
-- scope: the steps an enqueue just stored (their ids).
INSERT INTO offload_edge (parent_id, child_id, position)
SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(%(edges)s)
