-- enqueue_ids (the first statement of a copied batch, see PostgresStore._insert): take
-- %(count)s ids from the task table's sequence, ascending, for rows the batch will COPY
-- in with their ids.
-- scope: the table's sequence; the rows are the caller's backend's.
SELECT nextval(pg_get_serial_sequence('offload_task', 'id')) FROM generate_series(1, %(count)s)
