-- in_queues (a fragment of filters and runnable): the task is in one of %(queues)s, a
-- JSON array of queue names, or in any queue when %(any_queue)s.
(%(any_queue)s OR queue_name IN (SELECT value FROM json_each(%(queues)s)))
