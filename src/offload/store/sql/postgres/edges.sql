-- edges: what waits for what (%(parents)s[i] before %(children)s[i], the child's
-- %(positions)s[i]-th dependency).
-- scope: the steps an enqueue just stored (their ids).
INSERT INTO offload_edge (parent_id, child_id, position)
SELECT * FROM unnest(%(parents)s::bigint[], %(children)s::bigint[], %(positions)s::int[])
