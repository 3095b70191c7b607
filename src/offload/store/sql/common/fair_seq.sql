-- fair_seq (a fragment of enqueue): the turn of a task v with a fair key within its
-- priority: one after its key's last READY task, but not before the turn at the head of
-- the line (the least turn of a READY task of v's priority, from the ready index), so a
-- key that had nothing waiting joins the next round instead of the end of another
-- key's burst; v.fair_rank numbers a batch's tasks of one key. Without a fair key: 0,
-- before every turn (see docs/flow-control.md#fair-sharing).
CASE WHEN v.fair_key IS NULL THEN 0 ELSE v.fair_rank + {greatest}(
    COALESCE((SELECT f.fair_seq FROM offload_task AS f
              WHERE f.status = 'READY' AND f.backend = %(backend)s AND f.fair_key = v.fair_key
              ORDER BY f.fair_seq DESC LIMIT 1), 0),
    COALESCE((SELECT h.fair_seq FROM offload_task AS h
              WHERE h.status = 'READY' AND h.backend = %(backend)s AND h.age_key IS NULL
                AND {not_waiting} AND h.priority = v.priority AND h.fair_seq > 0
              ORDER BY h.fair_seq LIMIT 1), 1) - 1) END
